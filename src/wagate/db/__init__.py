"""Persistence: the database and its transactions, the tables, the outbox, the migrations."""
