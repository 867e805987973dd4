"""``LogFeatureBuilder``: PLUTO features of any frame of one log.

Build it once per log (it precomputes the log's box table, the ego arrays, the scenes' routes and
fetches the map's per-process index), then call ``build(frame_index)`` per scenario.

Validity rule (``FeatureError`` with a reason, the sample is skipped and counted):

- the frame lacks ``history_horizon_s`` of history or ``future_horizon_s`` of future in the log,
  or the log clock has a gap in the window (span off by more than half a step);
- reference lines on: no reference line has a valid point (ego off the map / route);
- reference lines off: no map polygon has a valid point.

Label cleaning (always, PLUTO's): the ego row of ``agent.valid_mask`` is cut from the first future
step whose ego centre lies inside the nearest red-light connector on the ego path
(``causal.analyse``); ``build_causal`` only decides whether the ``causal.*`` keys are stored.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from pluto_dvc.features import causal as causal_mod
from pluto_dvc.features import cost_map as cost_map_mod
from pluto_dvc.features.agents import (
    EGO_REAR_AXLE_TO_CENTER,
    LogTimeline,
    Window,
    build_agents,
    clean_ego_future,
    current_state,
    ego_center,
)
from pluto_dvc.features.map_index import feature_map
from pluto_dvc.features.map_polygons import (
    build_map_features,
    polygons_within,
    traffic_light_status,
)
from pluto_dvc.features.records import TL_RED, FeatureError, PlutoFeatures
from pluto_dvc.features.reference_lines import (
    build_reference_lines,
    candidate_paths,
    start_lanes,
)
from pluto_dvc.features.route import RouteBook, nearby_lanes
from pluto_dvc.features.static_objects import build_static_objects, present_statics
from pluto_dvc.nuplan.log_records import LogArrays
from pluto_dvc.nuplan.map_reader import NuPlanMap
from pluto_dvc.params import FeatureParams

LOG_FRAME_S = 0.05  # nuPlan lidar_pc clock (20 Hz)


class LogFeatureBuilder:
    """Per-log feature builder. ``timings`` accumulates CPU seconds (``time.process_time``) per
    component, for benchmarks.

    Raises ValueError at construction when ``sample_interval_s`` is not a multiple of the 0.05 s
    log clock (a params problem, not a per-sample one).
    """

    def __init__(self, params: FeatureParams, log: LogArrays, nuplan_map: NuPlanMap):
        self.params = params
        self.log = log
        step = params.sample_interval_s / LOG_FRAME_S
        if abs(step - round(step)) > 1e-6:
            raise ValueError(
                f"features.sample_interval_s={params.sample_interval_s} is not a multiple of "
                f"the {LOG_FRAME_S} s nuPlan log clock (use e.g. 0.1)"
            )
        self.step = int(round(step))
        self.history = int(round(params.history_horizon_s / params.sample_interval_s))
        self.future = int(round(params.future_horizon_s / params.sample_interval_s))
        self.steps_per_second = max(1, int(round(1.0 / params.sample_interval_s)))
        self.timings: dict[str, float] = defaultdict(float)
        with self._timed("init.map_index"):
            self.fmap = feature_map(nuplan_map, params.map_polyline_points)
        with self._timed("init.log"):
            self.timeline = LogTimeline.from_log(log)
            self.routes = RouteBook(self.fmap, log.scenes)
            self._slot_of_track = np.full(log.num_tracks, -1, dtype=np.int64)
        self.grid = cost_map_mod.Grid(params.cost_map_size, params.cost_map_resolution_m)
        # static objects: within radius_m of the ego centre (features) and every one within the
        # cost map's half side of the rear axle (obstacles), whatever the radius
        self._statics_radius = params.radius_m
        if params.build_cost_map:
            reach = self.grid.half + EGO_REAR_AXLE_TO_CENTER
            self._statics_radius = max(params.radius_m, reach)
        self.line_points = max(2, int(round(params.reference_line_length_m)))

    @contextmanager
    def _timed(self, name: str):
        start = time.process_time()
        try:
            yield
        finally:
            self.timings[name] += time.process_time() - start

    # ------------------------------------------------------------------------------ public

    def build(self, frame_index: int) -> dict[str, np.ndarray]:
        """Flat features of the scenario whose present step is log frame ``frame_index``."""
        return self.build_features(frame_index).to_flat()

    def build_features(self, frame_index: int) -> PlutoFeatures:
        """Typed features of one scenario; FeatureError when it is invalid."""
        p = self.params
        window = self._window(frame_index)
        f = window.present_frame
        origin = self.timeline.ego_xy[f].copy()
        angle = float(self.timeline.ego_heading[f])

        center = ego_center(origin, angle)

        with self._timed("agents"):
            agents, agent_tracks = build_agents(
                self.timeline, window, origin, angle, center, p.max_agents, self._slot_of_track
            )
            state = current_state(self.timeline, window)

        with self._timed("route"):
            ego_lanes = nearby_lanes(self.fmap, origin, angle)
            scene = int(self.log.clock.scene_index[f])
            route = self.routes.route(scene, ego_lanes)
            on_route_lanes = self.routes.lane_like_on_route(route)

        with self._timed("map"):
            rows = polygons_within(self.fmap, center, p.radius_m)
            on_route = np.zeros(len(rows), dtype=bool)
            lane_like = rows < self.fmap.num_lane_like
            on_route[lane_like] = on_route_lanes[rows[lane_like]]
            lights = self.log.traffic_lights
            tl_rows = lights.rows(f)
            tl_ids, tl_status = lights.lane_connector_id[tl_rows], lights.status[tl_rows]
            tl = traffic_light_status(self.fmap, rows, tl_ids, tl_status)
            map_features, map_rows = build_map_features(
                self.fmap, rows, origin, angle, p.radius_m, on_route, tl
            )
        if not p.build_reference_lines and not map_features.valid_mask.any():
            raise FeatureError("no map polygon point within the radius")

        with self._timed("reference_lines"):
            starts = start_lanes(self.fmap, on_route_lanes, origin, angle, center)
            paths = candidate_paths(
                self.fmap, starts, on_route_lanes, origin, p.reference_line_length_m
            )
            lines = None
            if p.build_reference_lines:
                seconds = agents.position[
                    0, window.present + self.steps_per_second :: self.steps_per_second
                ]
                lines, _ = build_reference_lines(
                    paths, origin, angle, p.reference_line_length_m, seconds.astype(np.float64)
                )
                if not lines.valid_mask.any():
                    raise FeatureError(
                        "no reference line: no on-route lane heading the ego's way within 3 m "
                        "of the ego centre"
                    )

        with self._timed("causal"):
            red_rows = self.fmap.connector_rows(tl_ids[tl_status == TL_RED])
            red_rows = np.unique(red_rows[red_rows >= 0])
            red_rows = red_rows[on_route_lanes[red_rows]]
            obstacles = causal_mod.present_obstacles(
                self.log.tracks,
                f,
                self.timeline.agent_category,
                origin,
                angle,
                center,
                self.fmap,
                red_rows,
            )
            start_rows = causal_mod.starting_rows(self.fmap, on_route_lanes, origin, angle)
            expert_end = self.timeline.ego_xy[window.frames[-1]]
            ego_path = causal_mod.trimmed_ego_path(
                causal_mod.choose_path(paths, start_rows, expert_end), origin, angle, center
            )
            future = slice(window.present + 1, len(window.frames))
            scene_facts = causal_mod.analyse(
                ego_path,
                obstacles,
                agents.position[0, future].astype(np.float64),
                agents.heading[0, future].astype(np.float64),
            )
            causal = None
            if p.build_causal:
                causal = causal_mod.build_causal(
                    scene_facts, agents, agent_tracks, window.present, map_rows
                )
            clean_ego_future(agents, window.present, scene_facts.fixed_mask)

        statics = None
        if p.build_static_objects or p.build_cost_map:
            with self._timed("static_objects"):
                statics = present_statics(
                    self.fmap,
                    self.log.tracks,
                    self.timeline.static_category,
                    f,
                    origin,
                    angle,
                    center,
                    self._statics_radius,
                )
        static_objects = None
        if p.build_static_objects:
            static_objects = build_static_objects(statics, p.max_static_objects, p.radius_m)

        cost = None
        if p.build_cost_map:
            with self._timed("cost_map.raster"):
                mask = cost_map_mod.drivable_mask(
                    self.fmap,
                    origin,
                    angle,
                    self.grid,
                    self._obstacles(agents, statics, window.present),
                )
            with self._timed("cost_map.distance"):
                cost = cost_map_mod.build_cost_map(mask, self.grid)

        features = PlutoFeatures(
            current_state=state,
            origin=origin.astype(np.float64),
            angle=np.array(angle, dtype=np.float64),
            agent=agents,
            map=map_features,
            reference_line=lines,
            static_objects=static_objects,
            cost_map=cost,
            causal=causal,
        )
        features.validate()  # shapes / dtypes agree (cheap; a mismatch is a bug, not a sample)
        return features

    # ------------------------------------------------------------------------------ helpers

    def _window(self, frame_index: int) -> Window:
        n = self.log.num_frames
        if not 0 <= frame_index < n:
            raise FeatureError(f"frame {frame_index} is outside the log (0..{n - 1})")
        first = frame_index - self.history * self.step
        last = frame_index + self.future * self.step
        if first < 0:
            raise FeatureError(
                f"not enough history: frame {frame_index} has {frame_index} earlier frames, "
                f"{self.history * self.step} needed"
            )
        if last >= n:
            raise FeatureError(
                f"not enough future: frame {frame_index} has {n - 1 - frame_index} later frames, "
                f"{self.future * self.step} needed"
            )
        stamps = self.log.clock.timestamp_us
        span = (int(stamps[last]) - int(stamps[first])) * 1e-6
        expected = (last - first) * LOG_FRAME_S
        if abs(span - expected) > 0.5 * self.params.sample_interval_s:
            raise FeatureError(
                f"log clock gap: frames {first}..{last} span {span:.2f} s, expected {expected:.2f} s"
            )
        frames = np.arange(first, last + 1, self.step, dtype=np.int64)
        return Window(frames=frames, present=self.history, step=self.step)

    def _obstacles(self, agents, statics, present: int) -> np.ndarray:
        """(K, 4, 2) ego-frame boxes cleared from the cost map: every static object within half
        the grid side of the rear axle and the parked agents (``cost_map.parked_agents``) at
        the present step."""
        near = np.hypot(*statics.center.T) <= self.grid.half if len(statics.center) else []
        parked = cost_map_mod.parked_agents(agents.position[1:], agents.valid_mask[1:])
        rows = 1 + np.flatnonzero(parked)
        center = np.concatenate([statics.center[near], agents.position[rows, present]])
        heading = np.concatenate([statics.heading[near], agents.heading[rows, present]])
        width = np.concatenate([statics.width[near], agents.shape[rows, present, 0]])
        length = np.concatenate([statics.length[near], agents.shape[rows, present, 1]])
        return cost_map_mod.obstacle_corners(
            center.astype(np.float64),
            heading.astype(np.float64),
            width.astype(np.float64),
            length.astype(np.float64),
        )
