"""The benchmark report as text."""


def format_report(report: dict) -> str:
    """The report as the text the benchmark prints."""
    lines = []
    for section in ('backbone', 'detector', 'train'):
        if section not in report:
            continue
        lines.append(f'\n== {section} ==')
        lines.append(f'{"case":<42} {"dev":>4} {"size":>5} {"batch":>5} '
                     f'{"img/s":>8} {"p50 ms":>9} {"p90 ms":>9} '
                     f'{"cpu ms":>9} {"GMACs":>6}')
        for r in report[section]['rows']:
            lines.append(
                f'{r["name"]:<42} {r["device"]:>4} {r["size"]:>5} '
                f'{r["batch"]:>5} {r["images_per_s"]:>8.2f} '
                f'{r["p50_ms"]:>9.2f} {r["p90_ms"]:>9.2f} '
                f'{r["cpu_p50_ms"]:>9.2f} '
                f'{r.get("gmacs_per_image", float("nan")):>6.3f}')
        for r in report[section]['ratios']:
            lines.append(
                f'{r["name"]:<24} {r.get("device", "cpu"):>4} '
                f'{r["size"]:>4}px b{r["batch"]:<2} wall '
                f'{r["wall"]["median"]:.3f} [{r["wall"]["min"]:.3f}-'
                f'{r["wall"]["max"]:.3f}] cpu {r["cpu"]["median"]:.3f}'
                + (f'  (MAC ratio {r["mac_ratio"]:.3f})'
                   if 'mac_ratio' in r else ''))
    if 'train' in report:
        ml = report['train']['mask_rcnn_losses']
        lines.append(f'Mask R-CNN losses with_cp False vs True: max |diff| '
                     f'{ml["max_abs_diff"]:.3g}')
    if 'memory' in report:
        m = report['memory']
        lines.append('\n== memory (Mask R-CNN training step) ==')
        for k, v in m['summary'].items():
            lines.append(f'{k:<14} peak {v["peak_mb"]:7.1f} MB (libraries '
                         f'{v["libs_rss_mb"]:.0f} MB excluded), activations '
                         f'{v["activation_peak_mb"]:7.1f} MB, saved for '
                         f'backward {v["saved_for_backward_mb"]:7.1f} MB, '
                         f'{v["step_s"]:.2f} s/iter')
        lines.append(f'with_cp saves {m["peak_saving"]:.1%} of the peak, '
                     f'{m["activation_peak_saving"]:.1%} of the activation '
                     f'peak, {m["saved_tensor_saving"]:.1%} of saved tensors;'
                     f' losses max |diff| {m["losses_max_abs_diff"]:.3g}')
    lines.append('\n== goals ==')
    for g in report['goals']:
        extra = '' if g['noise'] is None else \
            f' (rounds {g["noise"][0]:.3f}-{g["noise"][1]:.3f}; wall ' \
            f'{g["wall"]:.3f}, cpu {g["cpu"]:.3f})'
        sign = '>=' if g['better'] == 'higher' else '<='
        lines.append(f'{"MET " if g["met"] else "MISS"} {g["name"]:<20} '
                     f'{g["clock"]:>6} {g["value"]:.3f} {sign} '
                     f'{g["limit"]:.3f}{extra} [{g["where"]}]')
    return '\n'.join(lines)


def format_profile(name: str, prof: dict) -> str:
    """Phases and top ops of one profiled training iteration."""
    phases = ', '.join(f'{k} {v:.2f}s' for k, v in prof['phases_s'].items())
    lines = [f'\nprofile of one training iteration, {name}: {phases}',
             f'  {"op":<44} {"self ms":>9} {"%":>6} {"calls":>6}']
    for op in prof['top_ops']:
        lines.append(f'  {op["op"][:44]:<44} {op["self_cpu_ms"]:>9.1f} '
                     f'{op["percent"]:>5.1f}% {op["calls"]:>6}')
    return '\n'.join(lines)
