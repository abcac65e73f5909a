"""Everything about running TorchServe: Java, config.properties, process lifecycle, management API."""
