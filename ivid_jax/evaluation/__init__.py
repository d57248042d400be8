"""Evaluation: FID/KID/IS with the FID Inception, 3D-consistency metrics, ground-truth scores."""
