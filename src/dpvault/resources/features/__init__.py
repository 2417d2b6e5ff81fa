"""checkFeatureSupport: which datasource types this server backs up."""
