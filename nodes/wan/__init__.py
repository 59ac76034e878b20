"""FastVMT inside ComfyUI's Wan sampling, one module per concern:

* ``apply``: ``apply_fastvmt`` and the SAMPLER_SAMPLE wrapper that runs a guided call.
* ``sampler``: the guided range of a call, ``guided_sampling``, the shared noise stream.
* ``guided_step``: one guided outer step (the latent optimisation).
* ``reference``: the reference's latent, conditioning and motion flow per sigma.
* ``qk_capture``: a guidance pass (``QKPass``) with the early exit at the motion block.
* ``gradient_pass``: cloned weights, checkpoints and attention for gradient passes.
* ``memory_plan``: the gradient pass's memory and which blocks keep activations.
* ``image_to_video``: start-image conditioning of the reference, held latent entries.
* ``checks``, ``geometry``, ``summary``: input checks, model geometry, the run's report.
* ``comfy_compat``: every ComfyUI internal the others use (nothing else imports ComfyUI).
"""
