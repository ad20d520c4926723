"""The real engine: whatsmeow through neonize, in engine-host subprocesses."""
