"""wagate's vocabulary, with no I/O: states and transitions, event types, the caller, rates."""
