"""Telecommands carried out: what each accepted command does to a running supervisor.

The link (:mod:`flight.link.service`) authenticates and validates a command and reports its
acceptance; here, at a frame boundary, it starts and completes, each stage reported to the
ground (PUS service 1). Commands that change a partition's life (restart, enable, disable,
redundancy, safe mode) go through the recovery machine as inputs, like any fault would: the
machine keeps one account of every partition, and it is the machine that says when a command
is not allowed now. One handler per command, named after it; the table at the bottom is
checked against the catalog by the tests, so a declared command cannot lack a handler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flight import events
from flight.link.codes import FailureCode

__all__ = ["HANDLERS", "execute"]


def execute(sup: Any, link: Any, command: Any) -> None:
    """Start and (unless it completes later, like a model upload) complete ``command``."""
    handler = HANDLERS[command.name]
    handler(sup, link, command)


def _partition(sup: Any, link: Any, command: Any) -> Any:
    """The partition a command names, or a start failure (None)."""
    name = command.args["partition"]
    p = sup.by_name.get(name)
    if p is None:
        link.refuse(command, FailureCode.INVALID_ARGUMENT, f"no partition {name!r}")
    return p


def _through_recovery(sup: Any, link: Any, command: Any, event: Any) -> None:
    """Give the recovery machine a commanded input, unless it says the command is not
    allowed now (then a start failure with its reason)."""
    refusal = sup.fsm.can(event)
    if refusal is not None:
        state = sup.fsm.system_state.value
        if getattr(event, "name", None) in sup.by_name:
            state = sup.fsm.state(event.name).value
        link.refuse(command, FailureCode[refusal.name], f"refused while {state}")
        return
    link.start(command)
    sup.feed(event)
    if getattr(event, "name", None) in sup.by_name:
        link.complete(command, detail=f"{event.name} {sup.fsm.state(event.name).value}")
    else:
        link.complete(command, detail=f"system {sup.fsm.system_state.value}")


def ping(sup: Any, link: Any, command: Any) -> None:
    link.start(command)
    link.complete(command, detail=f"token={command.args['token']} frame={sup.frame}")


def set_redundancy(sup: Any, link: Any, command: Any) -> None:
    from flight import recovery

    p = _partition(sup, link, command)
    if p is not None:
        event = recovery.SetRedundancy(p.name, command.args["mode"])
        _through_recovery(sup, link, command, event)


def restart_partition(sup: Any, link: Any, command: Any) -> None:
    from flight import recovery

    p = _partition(sup, link, command)
    if p is not None:
        _through_recovery(sup, link, command, recovery.RestartCommanded(p.name))


def enable_partition(sup: Any, link: Any, command: Any) -> None:
    from flight import recovery

    p = _partition(sup, link, command)
    if p is not None:
        _through_recovery(sup, link, command, recovery.Enable(p.name))


def disable_partition(sup: Any, link: Any, command: Any) -> None:
    from flight import recovery

    p = _partition(sup, link, command)
    if p is not None:
        _through_recovery(sup, link, command, recovery.DisableCommanded(p.name))


def exit_safe_mode(sup: Any, link: Any, command: Any) -> None:
    from flight import recovery

    _through_recovery(sup, link, command, recovery.ExitSafeMode())


def scrub_now(sup: Any, link: Any, command: Any) -> None:
    """One full scrub pass of every region, now (after a known upset, before a critical
    inference)."""
    link.start(command)
    report = sup.scrubber.step(sup.scrubber.pass_budget)
    if report.errors_found:
        from flight import recovery

        sup.feed(recovery.MemoryUpsets(report.errors_found))
    sup.reload_unrepairable()
    link.complete(
        command,
        detail=f"checked={report.bytes_checked} errors={report.errors_found} "
        f"repaired={report.repaired} unrepairable={report.unrepairable}",
    )


def dump_cds(sup: Any, link: Any, command: Any) -> None:
    link.start(command)
    record = sup.cds.record
    document = {
        "boot_count": record.boot_count,
        "counters": record.counters,
        "state": record.last_good_state,
        "sequence": record.sequence,
        "written_at": record.written_at,
    }
    parts = link.dump("cds", document)
    link.complete(command, detail=f"parts={parts}")


def dump_reset_log(sup: Any, link: Any, command: Any) -> None:
    link.start(command)
    entries = [
        {"reason": e.reason, "time": e.time, "partition": e.partition, "action": e.action}
        for e in sup.cds.record.reset_log
    ]
    parts = link.dump("reset_log", entries)
    link.complete(command, detail=f"entries={len(entries)} parts={parts}")


def open_contact(sup: Any, link: Any, command: Any) -> None:
    link.start(command)
    now = link.clock()
    link.contact.open_for(command.args["duration_s"], now)
    link.contact.update(now)
    link.complete(command, detail=f"open for {command.args['duration_s']} s")


def close_contact(sup: Any, link: Any, command: Any) -> None:
    link.start(command)
    now = link.clock()
    link.contact.close(now)
    link.contact.update(now)
    link.complete(command)


def switch_key(sup: Any, link: Any, command: Any) -> None:
    spi = command.args["spi"]
    if link.key(spi) is None:
        link.refuse(command, FailureCode.INVALID_ARGUMENT, f"no key with SPI {spi}")
        return
    link.start(command)
    link.complete(command, link.switch_key(spi), f"active SPI {spi}")


def send_housekeeping(sup: Any, link: Any, command: Any) -> None:
    link.start(command)
    link.housekeeping(sup.summary(), sup.partition_telemetry())
    link.complete(command)


def model_upload(sup: Any, link: Any, command: Any) -> None:
    """Verify the staged file and activate it; completion comes when its trial ends."""
    from flight import upload
    from flight.jobs import model_limits

    p = _partition(sup, link, command)
    if p is None:
        return
    if p.name in sup.trials:
        link.refuse(command, FailureCode.BUSY, f"{p.name} already has a model on trial")
        return
    state = sup.fsm.state(p.name).value
    if p.disabled or state not in ("nominal", "degraded"):
        link.refuse(command, FailureCode.NOT_ALLOWED, f"{p.name} is {state}")
        return
    staged = link.staged(command.args["file"])
    if staged is None:
        link.refuse(command, FailureCode.INVALID_ARGUMENT, f"no file {command.args['file']!r}")
        return
    link.start(command)
    try:
        data = upload.verify(
            staged, command.args["mac"], link.key(command.spi), p.job.model, model_limits(p.spec)
        )
    except upload.UploadRejected as exc:
        sup.log.emit(events.MODEL_REJECTED, partition=p.name, file=staged.name, why=exc.detail)
        link.complete(command, exc.code, exc.detail)
        return
    path = upload.install(sup.cds_directory, p.name, command.sequence, data)
    upload.activate(sup, p, path, command, command.args["trial_frames"])


def test_flip_bit(sup: Any, link: Any, command: Any) -> None:
    """Test mode (the gate is at acceptance): invert one bit of one weight copy, and report
    the byte read back before and after."""
    from flight import inject

    p = _partition(sup, link, command)
    if p is None:
        return
    region = p.job.weights
    copy, offset, bit = command.args["copy"], command.args["byte_offset"], command.args["bit"]
    if copy >= region.copies or offset >= region.nbytes:
        link.refuse(
            command,
            FailureCode.INVALID_ARGUMENT,
            f"copy {copy} / byte {offset} outside {region.copies} x {region.nbytes} B",
        )
        return
    link.start(command)
    record = inject.apply(
        inject.SingleBitUpset(8 * offset + bit), region.raw(copy), site=f"{region.name}[{copy}]"
    )
    link.complete(
        command, detail=f"byte={offset} before={record.old.hex()} after={record.new.hex()}"
    )


def _agent(link: Any, command: Any, act: Callable[[], Any]) -> None:
    """Carry out one HIL agent request (test mode; the gate is at acceptance and again in
    flight.agent): a start failure if the agent refuses it, else the INJECTION packet with
    the bytes read back and the completion, now or, for an armed upset, when it fires."""
    from flight import agent, errors

    try:
        record = act()
    except agent.AgentError as exc:
        link.refuse(command, exc.code, str(exc))
        return
    except errors.ConfigError as exc:
        link.refuse(command, FailureCode.NOT_ALLOWED, str(exc))
        return
    link.start(command)
    if record is not None:
        _injected(link, command)(record)


def _injected(link: Any, command: Any) -> Callable[[Any], None]:
    from flight import agent

    site = {
        "hang_partition": "partition",
        "crash_partition": "partition",
        "flip_memory": "process-memory",
    }.get(command.name) or command.args["site"]

    def report(record: Any) -> None:
        link.injection(command, agent.telemetry(site, record))
        link.complete(command, detail=agent.describe(record))

    return report


def inject(sup: Any, link: Any, command: Any) -> None:
    """Test mode: upset a weight or CRC-table copy or the CDS now, or arm an upset of an
    output or an activation for the partition's next inference."""
    from flight import agent

    a = command.args
    _agent(
        link,
        command,
        lambda: agent.inject_fault(
            sup, a["site"], a["partition"], a["copy"], a["offset"], a["bit"], a["fault"],
            a["cluster"], a["node"], on_fire=_injected(link, command),
        ),
    )  # fmt: skip


def hang_partition(sup: Any, link: Any, command: Any) -> None:
    """Test mode: SIGSTOP one worker (the health monitor must see a hang)."""
    from flight import agent

    a = command.args
    _agent(link, command, lambda: agent.hang_partition(sup, a["partition"], a["replica"]))


def crash_partition(sup: Any, link: Any, command: Any) -> None:
    """Test mode: SIGKILL or SIGSEGV one worker (the health monitor must see a crash)."""
    from flight import agent

    a = command.args
    _agent(
        link,
        command,
        lambda: agent.crash_partition(sup, a["partition"], a["replica"], a["signal"]),
    )


def flip_memory(sup: Any, link: Any, command: Any) -> None:
    """Test mode: flip bits in a worker's or the supervisor's own writable memory."""
    from flight import agent

    a = command.args
    _agent(
        link,
        command,
        lambda: agent.flip_memory(
            sup, a["target"], a["partition"], a["replica"], a["draw"], a["bits"]
        ),
    )


#: Command name -> handler (every command of flight.link.catalog has one).
HANDLERS: dict[str, Callable[[Any, Any, Any], None]] = {
    "ping": ping,
    "set_redundancy": set_redundancy,
    "restart_partition": restart_partition,
    "enable_partition": enable_partition,
    "disable_partition": disable_partition,
    "exit_safe_mode": exit_safe_mode,
    "scrub_now": scrub_now,
    "dump_cds": dump_cds,
    "dump_reset_log": dump_reset_log,
    "open_contact": open_contact,
    "close_contact": close_contact,
    "switch_key": switch_key,
    "send_housekeeping": send_housekeeping,
    "model_upload": model_upload,
    "test_flip_bit": test_flip_bit,
    "inject": inject,
    "hang_partition": hang_partition,
    "crash_partition": crash_partition,
    "flip_memory": flip_memory,
}
