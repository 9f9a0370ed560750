"""Pictures: sweep curves and UMAP of generation branches."""
