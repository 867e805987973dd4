"""The synthetic nuPlan world: road networks, traffic and logs written in the nuPlan format."""
