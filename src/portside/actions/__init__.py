"""Operations: permission-checked CRUD, the action pipeline, built-in actions and the performer registry."""
