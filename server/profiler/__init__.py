"""``sluice profile``: search a model's server configuration with real trials, and recommend
the deployment's size (CPU cores, memory) from what they measured."""

from server.profiler.objective import Objective, Recommendation
from server.profiler.profile import Profile, ProfileConfig, ProfileError, run_profile
from server.profiler.space import Knobs, Space, default_space
from server.profiler.trial import Load, Trial, run_trial

__all__ = [
    "Knobs",
    "Load",
    "Objective",
    "Profile",
    "ProfileConfig",
    "ProfileError",
    "Recommendation",
    "Space",
    "Trial",
    "default_space",
    "run_profile",
    "run_trial",
]
