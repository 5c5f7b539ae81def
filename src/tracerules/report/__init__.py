"""Reports on what the engine decided: the self-contained HTML report and shared lights."""
