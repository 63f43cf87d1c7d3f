"""HTTP views: thin handlers that parse the request, call a service and shape the response."""
