"""Report layer: tables and plots of a run folder as HTML and Markdown."""
