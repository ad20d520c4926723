"""The session runtime: the manager that applies engine events per account, the handlers and
commands it runs, restoration at start and the sweeper."""
