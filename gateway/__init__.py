"""contact-gateway: an omnichannel contact-centre integration gateway for a bank."""

__version__ = "0.1.0"
