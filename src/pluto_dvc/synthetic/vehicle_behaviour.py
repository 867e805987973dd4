"""Vehicle and cyclist behaviour of the traffic simulation: the Intelligent Driver Model (IDM),
stops for lights, conflicts and crosswalks, route plans and lane changes.

``VehicleBehaviour`` is mixed into :class:`~pluto_dvc.synthetic.simulation.TrafficSimulation` and
works on its state: ``el`` (elements by fid), ``net`` (the road network), ``rng``, ``movers``,
``ego``, ``route``, ``cw_busy`` (walkers on each crosswalk), ``t``. Units: m, s, m/s, m/s^2.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from pluto_dvc.synthetic.elements import Element
from pluto_dvc.synthetic.traffic_agents import BICYCLE, VEHICLE, Mover

# the IDM (Treiber et al.): a = a_max (1 - (v / v0)^4 - (s* / gap)^2),
# s* = s0 + v T + v dv / (2 sqrt(a_max b))
IDM_ACCEL = 1.4  # a_max, m/s^2
IDM_DECEL = 2.0  # b, comfortable deceleration, m/s^2
IDM_HEADWAY_S = 1.3  # T, desired time gap, s
IDM_MIN_GAP_M = 2.5  # s0, gap kept when standing, m
MAX_DECEL = 4.0  # m/s^2, the strongest braking in normal traffic
EMERGENCY_DECEL = 7.5  # m/s^2, allowed when the gap is below EMERGENCY_GAP_M
EMERGENCY_GAP_M = 2.0
LIMIT_DECEL = 1.2  # m/s^2, braking towards a lower speed limit ahead
OVERSPEED_TOLERANCE_MPS = 0.2  # above the desired speed by more than this: brake at least ...
OVERSPEED_ACCEL = -1.0  # ... this much, m/s^2
YELLOW_DECEL = 3.0  # m/s^2: stop for a yellow light when this braking suffices
STOP_GAP_M = 0.5  # the front stops this far before a stop line (connector start)
CROSSWALK_GAP_M = 1.5  # the front stops this far before a busy crosswalk
CONFLICT_ZONE_M = 15.0  # wait for a crossing connector to clear within this distance
SIBLING_WINDOW_M = 20.0  # movers this close to the start of a sibling connector are leaders
CYCLIST_SPEED_MPS = 5.0  # cyclists ride at most this fast
LOOKAHEAD_M = 80.0  # leaders, limits and stops are looked for this far ahead
LANE_CHANGE_M = 35.0  # travel over which a lane change completes


class VehicleBehaviour:
    """How vehicles and cyclists drive (the IDM with its stops), plan routes and change lanes."""

    def _light(self, conn: int, cache: dict[int, str]) -> str:
        status = cache.get(conn)
        if status is None:
            status = str(self.net.signal_status(conn, self.t))
            cache[conn] = status
        return status

    def _occupancy(self) -> dict[int, list[Mover]]:
        occ: dict[int, list[Mover]] = {}
        for m in self.movers:
            occ.setdefault(m.element, []).append(m)
            if m.change_t >= 0 and m.change_from >= 0:
                occ.setdefault(m.change_from, []).append(m)
        return occ

    def _upcoming(self, m: Mover) -> list[int]:
        return [m.element, *list(m.plan)[:6]]

    def _desired_speed(self, kind: int, limit: float, desire: float) -> float:
        if kind == BICYCLE:
            return min(limit, CYCLIST_SPEED_MPS)
        return limit * desire

    def _idm(self, m: Mover, occ, lights, busy_conn) -> float:
        """IDM acceleration with leaders, speed limits ahead, lights, conflicts and crosswalks."""
        el = self.el[m.element]
        v0 = self._desired_speed(m.kind, el.speed_limit, m.desire)
        gap, lead_v = np.inf, 0.0
        leader = -1
        a_cap = np.inf
        m.wait_cross, m.wait_light = -1, False
        dist = -m.s  # distance from m to the start of each upcoming element
        for k, fid in enumerate(self._upcoming(m)):
            e = self.el[fid]
            if dist > LOOKAHEAD_M:
                break
            if k == 1 and fid in el.group_lanes:  # a planned lane change: alongside, not ahead
                dist = -self._projected_s(m, fid)
            # leaders on this element, and near the start of connectors that share its start
            others = list(occ.get(fid, ()))
            for sib in e.siblings:
                others.extend(
                    o for o in occ.get(sib, ()) if o.element == sib and o.s < SIBLING_WINDOW_M
                )
            for o in others:
                if o is m:
                    continue
                o_s = o.s if o.element in (fid, *e.siblings) else self._projected_s(o, fid)
                ahead = dist + o_s
                if ahead > 0 and (k > 0 or o_s > m.s):
                    g = ahead - (o.length + m.length) / 2
                    if g < gap:
                        gap, lead_v, leader = g, o.v, o.track
            if k > 0:
                # slow down for a lower limit ahead: v^2 = v_next^2 + 2 b d
                v_next = self._desired_speed(m.kind, e.speed_limit, m.desire or 1.0)
                v0 = min(v0, np.sqrt(v_next**2 + 2 * LIMIT_DECEL * max(dist - m.length / 2, 0.0)))
                if m.v > v_next:  # reach the lower limit by the time the centre gets there
                    a_cap = min(a_cap, (v_next**2 - m.v**2) / (2 * max(dist - 0.5, 0.5)))
                if e.is_connector and self._must_stop(m, e, dist, lights, busy_conn):
                    g = dist - m.length / 2 - STOP_GAP_M
                    if g < gap:
                        gap, lead_v, leader = g, 0.0, -1
                        m.wait_light = self._light(fid, lights) != "green"
            for cw, s_in, _s_out in e.crossings:
                if self.cw_busy.get(cw, 0) > 0:
                    front = dist + s_in - m.length / 2 - CROSSWALK_GAP_M
                    if front > -0.5 and front < gap:  # not yet on it
                        gap, lead_v, leader = front, 0.0, -1
                        m.wait_cross = cw
            dist += e.length
        if m.is_ego:
            self.ego_leader = (leader, gap)
        v = m.v
        free = 1.0 - (v / max(v0, 0.1)) ** 4
        if not np.isfinite(gap):
            a = IDM_ACCEL * free
        else:
            s_star = (
                IDM_MIN_GAP_M
                + v * IDM_HEADWAY_S
                + v * (v - lead_v) / (2 * np.sqrt(IDM_ACCEL * IDM_DECEL))
            )
            a = IDM_ACCEL * (free - (max(s_star, 0.0) / max(gap, 0.1)) ** 2)
        if v > v0 + OVERSPEED_TOLERANCE_MPS:
            a = min(a, OVERSPEED_ACCEL)
        a = min(a, a_cap)
        return float(
            np.clip(a, -MAX_DECEL if gap > EMERGENCY_GAP_M else -EMERGENCY_DECEL, IDM_ACCEL)
        )

    def _projected_s(self, o: Mover, fid: int) -> float:
        """A lane-changing mover seen on the lane it is leaving: the same fraction of length."""
        return o.s / max(self.el[o.element].length, 1e-6) * self.el[fid].length

    def _must_stop(self, m: Mover, conn: Element, dist: float, lights, busy_conn) -> bool:
        """Stop before connector ``conn`` (dist m ahead): red, catchable yellow, or a conflict."""
        if (
            conn.fid in self.net.connectors
            and self.net.connectors[conn.fid].signal_phase is not None
        ):
            status = self._light(conn.fid, lights)
            stop_dist = m.v**2 / (2 * YELLOW_DECEL)
            front = dist - m.length / 2
            if status == "red" and front > -0.5:
                return True
            if status == "yellow" and front > stop_dist:
                return True
        return bool(dist - m.length / 2 < CONFLICT_ZONE_M and conn.conflicts & busy_conn)

    def _advance(self, m: Mover, ds: float) -> None:
        m.s += ds
        while m.s > self.el[m.element].length:
            if not m.plan or m.plan[0] not in self.el[m.element].successors:
                self._replan(m)  # empty plan, or a lane change that did not happen in time
                if not m.plan:
                    m.s, m.v = self.el[m.element].length, 0.0
                    break
            m.s -= self.el[m.element].length
            m.element = m.plan.popleft()
            if len(m.plan) < 6:
                self._extend_plan(m)
        x, y, h = self._lane_change_pose(m, ds)
        m.x, m.y, m.heading = x, y, h

    def _lane_change_pose(self, m: Mover, ds: float) -> tuple[float, float, float]:
        """Pose with the lateral offset of a lane change, which runs over LANE_CHANGE_M metres
        of travel as a smoothstep (so the heading change stays small at any speed)."""
        if m.change_t < 0:
            return self.el[m.element].pose(m.s)
        m.change_t += ds  # metres travelled since the change started
        frac = min(m.change_t / LANE_CHANGE_M, 1.0)
        m.offset = m.offset0 * (1.0 - (3 * frac**2 - 2 * frac**3))
        x, y, h = self.el[m.element].pose(m.s, m.offset)
        slope = -m.offset0 * (6 * frac - 6 * frac**2) / LANE_CHANGE_M  # d offset / d s
        if frac >= 1.0:
            m.change_t, m.offset, m.change_from = -1.0, 0.0, -1
        return x, y, h + float(np.arctan(slope))

    def _replan(self, m: Mover) -> None:
        """A new plan leaving from the end of the current element (no lane change first)."""
        if m.is_ego:
            new = self._plan_route(m.element, first_from_current=True)
            self.route = self.route[: self.route_pos + 1] + new[1:]
            m.plan = deque(new[1:])
        else:
            m.plan = self._random_plan(m.element)

    def _extend_plan(self, m: Mover) -> None:
        tail = m.plan[-1] if m.plan else m.element
        if m.is_ego:
            more = self._plan_route(tail)[1:]
            self.route.extend(more)
            m.plan.extend(more)
        else:
            m.plan.extend(self._random_plan(tail, 6))

    @property
    def route_pos(self) -> int:
        """Index of the ego's current element in ``route``."""
        return len(self.route) - len(self.ego.plan) - 1

    def _maybe_change_lanes(self, occ) -> None:
        ego = self.ego
        if ego.change_t < 0 and ego.plan and not self.el[ego.element].is_connector:
            nxt = ego.plan[0]
            if nxt in self.el[ego.element].group_lanes and nxt != ego.element:
                left = self.el[nxt].length - self._projected_s(ego, nxt)
                if left < LANE_CHANGE_M + 10.0:
                    self._replan(ego)  # too late to change lanes: take a turn from this lane
                else:
                    self._try_change(ego, nxt, occ)
        for m in self.movers:
            if m.is_ego or m.kind != VEHICLE or m.change_t >= 0:
                continue
            el = self.el[m.element]
            if el.is_connector or len(el.group_lanes) < 2 or self.rng.random() > 0.002:
                continue
            i = el.group_lanes.index(m.element)
            j = i + (1 if self.rng.random() < 0.5 else -1)
            if 0 <= j < len(el.group_lanes):
                target = el.group_lanes[j]
                if self._try_change(m, target, occ):
                    m.plan = self._random_plan(target)

    def _try_change(self, m: Mover, target: int, occ) -> bool:
        """Start a lane change to the adjacent lane ``target`` when it has a safe gap."""
        src, dst = self.el[m.element], self.el[target]
        s_new = m.s / max(src.length, 1e-6) * dst.length
        if s_new < 5.0 or dst.length - s_new < LANE_CHANGE_M + 10.0:
            return False
        for o in occ.get(target, ()):
            o_s = o.s if o.element == target else self._projected_s(o, target)
            ahead = o_s - s_new
            if (
                -(o.length / 2 + m.length / 2 + 6.0 + o.v * 1.0)
                < ahead
                < (o.length / 2 + m.length / 2 + 6.0 + m.v * 1.2)
            ):
                return False
        # lateral offset of the old lane centre seen from the new lane
        x0, y0, h0 = dst.pose(s_new)
        off = -np.sin(h0) * (m.x - x0) + np.cos(h0) * (m.y - y0)
        if abs(off) > 6.0:
            return False
        m.change_from = m.element
        m.element, m.s = target, s_new
        if m.plan and m.plan[0] == target:
            m.plan.popleft()
        m.offset0 = m.offset = float(off)
        m.change_t = 0.0
        return True

    def _plan_route(
        self, start_lane: int, min_length_m: float = 600.0, first_from_current: bool = False
    ) -> list[int]:
        """A long ego route: lanes and connectors, with lane changes where the turn needs one.

        At each lane end a connector is drawn (straight more likely); when it leaves from another
        lane of the same roadblock, the route holds that lane next (a lane change) before it.
        """
        route = [start_lane]
        length = self.el[start_lane].length
        lane = start_lane
        while length < min_length_m:
            el = self.el[lane]
            sources = [lane] if first_from_current and len(route) == 1 else el.group_lanes
            options = [(src, c) for src in sources for c in self.el[src].successors]
            if not options:
                break
            weights = np.array(
                [3.0 if self.el[c].turn == "straight" else 1.0 for _, c in options], dtype=float
            )
            # prefer not to change lanes twice in a row on short lanes
            weights[[o != lane for o, _ in options]] *= 0.6
            k = int(self.rng.choice(len(options), p=weights / weights.sum()))
            src, conn = options[k]
            if src != lane:
                route.append(src)
            route.append(conn)
            lane = self.el[conn].successors[0]
            route.append(lane)
            length += self.el[conn].length + self.el[lane].length
        return route

    def _random_plan(self, element: int, steps: int = 12) -> deque[int]:
        plan: deque[int] = deque()
        cur = element
        for _ in range(steps):
            succ = self.el[cur].successors
            if not succ:
                break
            if self.el[cur].is_connector:
                cur = succ[0]
            else:
                w = np.array([3.0 if self.el[c].turn == "straight" else 1.0 for c in succ])
                cur = int(succ[int(self.rng.choice(len(succ), p=w / w.sum()))])
            plan.append(cur)
        return plan
