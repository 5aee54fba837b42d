"""Credentials (docker config.json and helpers), auth challenges and the token cache."""
