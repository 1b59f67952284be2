"""Deployment files and the scripts that run or check them (not installed with the services)."""
