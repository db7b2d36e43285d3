"""Inference: outputs of a fitted network from several threads at once equal the sequential ones, and leave
the BatchNorm buffers and the evaluation mode as they were."""

import threading

import numpy as np
import torch


def test_concurrent_inference_equals_sequential_and_keeps_batch_norm_buffers(fitted_on_uint8, pixels):
    est = fitted_on_uint8
    buffers = {name: b.clone() for name, b in est.model_.named_buffers()}
    expected = {
        "predict": est.predict(pixels[0]),
        "predict_proba": est.predict_proba(pixels[0]),
        "transform": est.transform(pixels[0]),
    }
    results, errors = [], []

    def work(method):
        try:
            for _ in range(5):
                results.append((method, getattr(est, method)(pixels[0])))
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(m,)) for m in expected for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 45
    for method, value in results:
        np.testing.assert_array_equal(value, expected[method])
    for name, value in est.model_.named_buffers():
        assert torch.equal(value, buffers[name]), name
    assert not est.model_.training
