"""Users: accounts, roles and policies, sessions, API tokens, audit log, mail outbox.

``policies`` holds the one role → permission matrix; ``service`` the
functions routes call; ``passwords`` argon2id and the password policy;
``mail`` the outbox and its SMTP delivery.
"""
