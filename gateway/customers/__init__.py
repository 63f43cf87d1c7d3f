"""The customer read model: documents from core banking, identity resolution, masking."""
