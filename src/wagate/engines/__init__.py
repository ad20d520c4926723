"""Engines turn a WhatsApp library's callbacks into wagate's ``EngineEvent``s."""
