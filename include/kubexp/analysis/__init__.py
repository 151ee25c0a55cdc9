"""Analysis of stored experiments: loaders, steady-state windows, statistics, figures, the HTML report."""
