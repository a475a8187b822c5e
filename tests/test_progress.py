"""mmkit.progress: in a kernel a bar is one plain-text output redrawn in place, nested bars share it."""

import nbformat
from nbclient import NotebookClient

from mmkit.progress import NotebookBar, in_notebook, progress


def test_outside_a_kernel_it_is_tqdms_text_bar(capsys):
    assert not in_notebook()
    bar = progress(range(3), desc="plain")
    assert not isinstance(bar, NotebookBar)
    assert list(bar) == [0, 1, 2]
    assert "plain" in capsys.readouterr().err


def test_in_a_kernel_nested_bars_leave_one_text_output():
    code = (
        "from mmkit.progress import progress\n"
        "for e in progress(range(4), desc='epochs', mininterval=0):\n"
        "    for s in progress(range(50), desc=f'steps {e}', leave=False, delay=0, mininterval=0):\n"
        "        pass\n"
        "    for k in progress(range(2), desc=f'kept {e}', delay=0, mininterval=0):\n"  # nested: goes too
        "        pass\n"
        "for f in progress(range(3), desc='quick', leave=False):\n"  # done within its delay: never shown
        "    pass\n"
        "print('done')\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data", "stream"], outputs
    text = outputs[0].data["text/plain"]
    assert "epochs" in text and "4/4" in text
    assert "steps" not in text and "kept" not in text  # the nested bars' lines went when they closed
    assert "application/vnd.jupyter.widget-view+json" not in outputs[0].data
    assert outputs[1].text == "done\n"
