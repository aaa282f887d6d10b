"""HTTP routes: parse, call, respond. Rules live elsewhere."""
