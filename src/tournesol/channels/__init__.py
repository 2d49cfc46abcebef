"""Channel senders: the ground layer that sends messages and knows nothing of the database.

One module per concern: ``base`` (send results, the sender protocol, rate limiting), ``links``
(signed tracking, unsubscribe and preference-center links), ``email`` (SMTP, bounces,
complaints), ``sms`` (HTTP provider, STOP replies, segments), and one module per further
channel. Import the module you need; nothing is loaded here.
"""
