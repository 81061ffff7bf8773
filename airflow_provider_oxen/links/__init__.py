"""Extra links of the Oxen operators (extra_links) and the plugin that serves their live variants (plugin)."""
