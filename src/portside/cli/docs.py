"""Generated documentation fragments (the README's options table is checked against this)."""

from __future__ import annotations

from portside.settings import SETTINGS


def options_table() -> str:
    lines = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = "" if s.default in ("", (), None) else str(s.default)
        flag = f"`--{s.name}`" + (" (repeatable)" if s.repeatable else "")
        shown = f"`{default}`" if default else "—"
        meaning = s.help.replace("|", "\\|")
        lines.append(f"| {flag} | `{s.env}` | {shown} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(options_table())
