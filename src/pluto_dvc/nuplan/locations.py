"""The four nuPlan map locations: names, map versions and projected coordinate systems."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MapLocation:
    """One nuPlan map location.

    name: the location name stored in ``log.map_version`` and used as the maps-root folder.
    version: the map version folder (``<maps_root>/<name>/<version>/map.gpkg``).
    epsg: EPSG code of the location's UTM zone (the ``projectedCoordSystem`` of its map).
    utm_origin: a plausible UTM easting/northing (m) of the city, used by the synthetic maps.
    """

    name: str
    version: str
    epsg: int
    utm_origin: tuple[float, float]

    @property
    def crs(self) -> str:
        return f"EPSG:{self.epsg}"


LOCATIONS: dict[str, MapLocation] = {
    loc.name: loc
    for loc in (
        MapLocation("us-nv-las-vegas-strip", "9.15.1915", 32611, (664_000.0, 3_997_000.0)),
        MapLocation("us-ma-boston", "9.12.1817", 32619, (331_000.0, 4_690_000.0)),
        MapLocation("us-pa-pittsburgh-hazelwood", "9.17.1937", 32617, (587_000.0, 4_475_000.0)),
        MapLocation("sg-one-north", "9.17.1964", 32648, (365_000.0, 143_000.0)),
    )
}

MAPS_VERSION_JSON = "nuplan-maps-v1.0.json"
MAP_FILE_NAME = "map.gpkg"
