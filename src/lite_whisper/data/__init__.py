"""Speech in: audio files, datasets (folders, manifests, hub), and the log-mel features the encoder reads."""
