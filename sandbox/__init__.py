"""Mensajero sandbox: a local stand-in for Meta's WhatsApp Graph API and for the phones."""
