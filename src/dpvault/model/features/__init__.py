"""features: checkFeatureSupport's request, and which datasource types dpvault backs up."""
