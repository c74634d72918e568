"""Fixed dashboard uids: links between dashboards and overwrite-by-uid on publish need them."""

OVERVIEW = "ketenoverzicht"
DRILLDOWN = "ketenmonitor-fase"
PIPELINE = "ketenmonitor-pijplijn"
HISTORY = "ketenmonitor-historie"
