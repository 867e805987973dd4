"""nuPlan's ego vehicle (a Chrysler Pacifica): the one definition of its dimensions, metres.

The logged ego pose is the rear axle; the box centre lies ``EGO_REAR_AXLE_TO_CENTER_M`` ahead of it
along the heading (half the length 5.176 minus the rear overhang 1.127).
"""

EGO_LENGTH_M = 5.176
EGO_WIDTH_M = 2.297
EGO_HEIGHT_M = 1.777
EGO_WHEELBASE_M = 3.089
EGO_REAR_AXLE_TO_CENTER_M = 1.461
