"""Which model is on the GPU during each stage (`rounds.offload_models`).

The loop holds the critic; the generator is rebuilt by each stage that uses it and dropped when the stage returns.
With `rounds.offload_models` the critic leaves the accelerator (`Critic.to_host`: weights to CPU, or a vLLM engine
put to sleep) before a stage that needs the GPU for something else (sampling, training, critic refinement, which
loads its own copy to train) and comes back (`Critic.to_device`) before judging; the generator is released (moved
to CPU, its memory returned) before the critic judges in the evaluation stage. Without the switch nothing moves (a
critic and a generator that fit on one GPU together). Without CUDA every move is a no-op, so the same code runs on
CPU.
"""

from __future__ import annotations

from dualipo.devices import release_memory

CRITIC_STAGES = ("judge",)  # stages that judge with the run's critic (evaluation switches inside the stage)


def park_critic(offload: bool, critic) -> None:
    """The run's critic off the accelerator (`Critic.to_host`: weights to CPU, a vLLM engine asleep)."""
    if offload and critic is not None:
        critic.to_host()
        release_memory()


def use_critic(offload: bool, critic) -> None:
    """The run's critic back on its device (`Critic.to_device`)."""
    if offload and critic is not None:
        critic.to_device()


def release_generator(offload: bool, gen) -> None:
    """The generator's pipeline to CPU and its GPU memory returned, before the critic needs the GPU."""
    if offload:
        gen.pipe.to("cpu")
        release_memory()


def before_stage(offload: bool, critic, name: str) -> None:
    """Place the run's critic for stage `name`."""
    if name in CRITIC_STAGES:
        use_critic(offload, critic)
    elif name != "pairs":
        park_critic(offload, critic)


def after_stage(offload: bool) -> None:
    """A stage's generator is dropped when the stage returns: give its memory back to the device."""
    if offload:
        release_memory()
