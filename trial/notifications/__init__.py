"""E-mail notifications: an outbox written with each event, delivered over SMTP by a sender.

``services.notify`` adds a message to the session of the event that causes it, so the two
commit (or roll back) together; ``sender`` delivers what is due, at least once, each message
under a Message-ID fixed when it was written. Nothing here may carry an arm or a password.
"""
