"""Deployment files; `deploy.local` is importable tooling for development (not shipped)."""
