"""One transaction per command: accounts, workspaces, keys, linking, messages, the event log,
the funnel and rate limits. Services read and write rows; they never call an engine."""
