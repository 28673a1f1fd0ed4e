"""Analysis: tables, figures and reports from the collected results alone (never imports torch or job code)."""
