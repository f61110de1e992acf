"""The SMTP edge (L4): aiosmtpd listeners from `mail_server` rows; decisions in `mail.inbound`."""
