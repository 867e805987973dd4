"""The nuPlan on-disk format: log databases, GeoPackage maps and scenario enumeration."""
