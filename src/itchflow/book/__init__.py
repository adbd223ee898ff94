"""Order book engine: order store, price ladders, BBO/depth queries, event output."""
