"""Pedestrians of the traffic simulation: they wait at the kerb, cross at crosswalks when no
vehicle is close or unable to stop, keep clear of each other, and leave after crossing.

``PedestrianBehaviour`` is mixed into :class:`~pluto_dvc.synthetic.simulation.TrafficSimulation`
and works on its state: ``walkers``, ``movers``, ``statics``, ``cw_busy``, ``cw_fids``,
``cw_center``, ``el``, ``net``, ``rng``, ``ego``.
"""

from __future__ import annotations

import numpy as np

from pluto_dvc.synthetic.boxes import boxes_overlap
from pluto_dvc.synthetic.traffic_agents import DT, PEDESTRIAN, SAFETY_MARGIN_M, Walker

PED_SPEED = 1.3  # m/s
KERB_SETBACK_M = 1.5  # pedestrians wait this far behind the kerb


class PedestrianBehaviour:
    """Spawning, waiting, crossing and leaving of pedestrians."""

    def _step_walkers(self) -> None:
        for w in list(self.walkers):
            if not w.crossing and w.progress == 0.0:
                w.t_wait -= DT
                if w.t_wait <= 0 and self._crossing_is_safe(w.crosswalk):
                    w.crossing = True
                    self.cw_busy[w.crosswalk] = self.cw_busy.get(w.crosswalk, 0) + 1
            elif w.crossing:
                total = float(np.linalg.norm(w.end - w.start))
                step = min(total, w.progress + PED_SPEED * DT)
                if not self._walker_blocked(w, step, total):
                    w.progress = step
                if w.progress >= total:
                    w.crossing = False
                    self.cw_busy[w.crosswalk] -= 1
            else:
                w.done_t += DT
                if w.done_t > 4.0:
                    self.walkers.remove(w)
                    continue
            total = float(np.linalg.norm(w.end - w.start))
            p = w.start + (w.end - w.start) * (w.progress / max(total, 1e-6))
            w.x, w.y = float(p[0]), float(p[1])

    def _walker_blocked(self, w: Walker, progress: float, total: float) -> bool:
        """Would walking on to ``progress`` bring ``w`` within the safety margin of a walker?"""
        p = w.start + (w.end - w.start) * (progress / max(total, 1e-6))
        others = [
            o
            for o in [*self.walkers, *self.statics]
            if o is not w and abs(o.x - p[0]) + abs(o.y - p[1]) < 3
        ]
        if not others:
            return False
        mine = np.array([[p[0], p[1], w.heading, w.length, w.width]] * len(others))
        theirs = np.array([[o.x, o.y, o.heading, o.length, o.width] for o in others])
        return bool(boxes_overlap(mine, theirs, SAFETY_MARGIN_M).any())

    def _crossing_is_safe(self, cw: int) -> bool:
        """No vehicle on the crosswalk or unable to stop comfortably before it."""
        for m in self.movers:
            dist = -m.s
            for fid in self._upcoming(m)[:3]:
                e = self.el[fid]
                for c, s_in, s_out in e.crossings:
                    if c != cw:
                        continue
                    front = dist + s_in - m.length / 2
                    back = dist + s_out + m.length / 2
                    if front < 0 < back:
                        return False  # on it
                    if 0 <= front < m.v**2 / (2 * 2.0) + 6.0:
                        return False
                dist += e.length
                if dist > 60:
                    break
        return True

    def _spawn_walker(self) -> None:
        if not self.cw_fids:
            return
        d = np.hypot(*(self.cw_center - [self.ego.x, self.ego.y]).T)
        cands = [self.cw_fids[i] for i in np.flatnonzero(d < 110.0)]
        if not cands:
            return
        cw = int(cands[self.rng.integers(len(cands))])
        path = self.net.crosswalks[cw].walk_path
        a, b = (path[0], path[1]) if self.rng.random() < 0.5 else (path[1], path[0])
        # keep to the right of the walking direction: walkers crossing the other way pass them
        right = np.array([(b - a)[1], -(b - a)[0]]) / max(np.linalg.norm(b - a), 1e-6)
        shift = right * float(self.rng.uniform(0.4, 1.4))
        u = (b - a) / max(np.linalg.norm(b - a), 1e-6)
        back = u * KERB_SETBACK_M  # wait and finish on the sidewalk, not at the kerb edge
        w = Walker(
            track=-1,
            crosswalk=cw,
            start=np.asarray(a, float) + shift - back,
            end=np.asarray(b, float) + shift + back,
            t_wait=float(self.rng.uniform(0.5, 6.0)),
            heading=float(np.arctan2(*(b - a)[::-1])),
        )
        w.x, w.y = float(w.start[0]), float(w.start[1])
        if self._overlaps_any(self._box(w), exclude=None, margin=0.4):
            return
        w.track = self._new_track(PEDESTRIAN, (w.width, w.length, w.height))
        self.walkers.append(w)
