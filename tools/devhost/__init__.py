"""A small local stand-in for the Azure Functions host, for machines without Core Tools (see the README: devhost)."""
