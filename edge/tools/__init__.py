"""Installer and integrator tools behind the edge-gateway command."""
