//! File and directory transfer over Transit (PROTOCOL §8). Work in progress.
