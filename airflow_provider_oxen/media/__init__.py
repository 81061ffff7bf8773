"""What the provider does to generated media: image checks, video checks and poster frames, contact sheets."""
