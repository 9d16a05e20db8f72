"""transformers' common suites (ModelTesterMixin, ConfigTester, SequenceFeatureExtractionTestMixin) run on DASS, set up
as transformers' in-tree convolutional and audio models set up theirs. The suites come from the source
distribution of the installed transformers (tests/transformers_sources.py); offline this module skips.

Overridden or skipped tests say why beside them: only what DASS has no such thing for (attentions, token
embeddings, a sequence-shaped hidden state) or what the sdist does not ship.
"""

from __future__ import annotations

import unittest
from functools import partialmethod
from unittest import mock

import numpy as np
import torch
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES,
    MODEL_MAPPING_NAMES,
)

from transformers_dass import (
    DassConfig,
    DassFeatureExtractor,
    DassForAudioClassification,
    DassModel,
    DassPreTrainedModel,
)

from .transformers_sources import common_suite

ModelTesterMixin = common_suite("test_modeling_common").ModelTesterMixin
floats_tensor = common_suite("test_modeling_common").floats_tensor
ConfigTester = common_suite("test_configuration_common").ConfigTester
SequenceFeatureExtractionTestMixin = common_suite("test_sequence_feature_extraction_common").SequenceFeatureExtractionTestMixin


class DassModelTester:
    """A tiny DASS: 4 stages of widths 8/16/24/32, one block each, 16 mel bins, 3 labels; odd frame counts."""

    def __init__(self, parent, batch_size=3, frames=37, num_mel_bins=16, num_labels=3):
        self.parent = parent
        self.batch_size, self.frames, self.num_mel_bins, self.num_labels = batch_size, frames, num_mel_bins, num_labels
        self.dims, self.depths = [8, 16, 24, 32], [1, 1, 1, 1]
        self.is_training = True

    def get_config(self) -> DassConfig:
        return DassConfig(
            dims=self.dims, depths=self.depths, num_mel_bins=self.num_mel_bins, num_labels=self.num_labels,
            drop_path_rate=0.0, scan_backend="reference",
        )

    def prepare_config_and_inputs(self):
        input_values = floats_tensor([self.batch_size, self.frames, self.num_mel_bins])
        labels = torch.randint(0, self.num_labels, (self.batch_size,))
        return self.get_config(), input_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, input_values, _ = self.prepare_config_and_inputs()
        return config, {"input_values": input_values}

    def map_size(self, size: int, stride_twos: int) -> int:
        """A size after `stride_twos` stride-2 convolutions (3x3, padding 1): ceil-halved each time."""
        for _ in range(stride_twos):
            size = (size + 1) // 2
        return size

    def check_model(self, config, input_values):
        model = DassModel(config).eval()
        with torch.no_grad():
            out = model(input_values)
        expected = (self.batch_size, self.dims[-1], self.map_size(self.num_mel_bins, 5), self.map_size(self.frames, 5))
        self.parent.assertEqual(tuple(out.last_hidden_state.shape), expected)
        self.parent.assertEqual(tuple(out.pooler_output.shape), (self.batch_size, self.dims[-1]))

    def check_for_audio_classification(self, config, input_values, labels):
        model = DassForAudioClassification(config).eval()
        out = model(input_values, labels=labels)
        self.parent.assertEqual(tuple(out.logits.shape), (self.batch_size, self.num_labels))
        self.parent.assertEqual(model.config.problem_type, "single_label_classification")


class DassModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (DassModel, DassForAudioClassification)
    has_attentions = False  # a state-space model: no attention weights to return
    test_resize_embeddings = False  # no token embeddings
    test_torch_exportable = False  # the sdist omits tests/exporters (see transformers_sources.py)

    def setUp(self):
        self.model_tester = DassModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=DassConfig, has_text_modality=False, common_properties=["hidden_size", "num_labels"]
        )
        # transformers' suites recognise base models and audio classifiers by the class names of its own Auto
        # tables (labels in `_prepare_for_class`, which classes train, the new-head test of
        # `test_mismatched_shapes_have_properly_initialized_weights`): add DASS to them for each test, as an in-tree
        # model is.
        for table, name in ((MODEL_MAPPING_NAMES, "DassModel"),
                            (MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES, "DassForAudioClassification")):
            patcher = mock.patch.dict(table, {"dass": name})
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_model(self):
        config, input_values, _ = self.model_tester.prepare_config_and_inputs()
        self.model_tester.check_model(config, input_values)

    def test_for_audio_classification(self):
        self.model_tester.check_for_audio_classification(*self.model_tester.prepare_config_and_inputs())

    def test_hidden_states_output(self):
        """Replaces the mixin's check, which expects (batch, sequence, hidden) states: DASS returns channels-first
        maps, the patch embedding then each stage's output before its downsampling."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        tester = self.model_tester
        for model_class in self.all_model_classes:
            model = model_class(config).eval()
            with torch.no_grad():
                states = model(**inputs, output_hidden_states=True).hidden_states
            self.assertEqual(len(states), 1 + len(tester.dims))
            for i, state in enumerate(states):
                down = 2 + max(i - 1, 0)
                expected = (tester.batch_size, tester.dims[max(i - 1, 0)], tester.map_size(tester.num_mel_bins, down),
                            tester.map_size(tester.frames, down))
                self.assertEqual(tuple(state.shape), expected, f"hidden state {i}")

    def test_reverse_loading_mapping(self):
        """The mixin's round trip of the Hub-layout mapping (hub_layout.py) expects `save_pretrained` to write the
        source layout, transformers' default; DASS writes its own unless `save_original_format=True`, so ask for it."""
        hub_saving = partialmethod(DassPreTrainedModel.save_pretrained, save_original_format=True)
        with mock.patch.object(DassPreTrainedModel, "save_pretrained", hub_saving):
            super().test_reverse_loading_mapping()

    @unittest.skip("DASS has no token embeddings: its input layer is a convolution, not an nn.Embedding to swap")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip("DASS has no attention: no attention weights to retain (hidden-state gradients: test_transformers_contract.py)")
    def test_retain_grad_hidden_states_attentions(self):
        pass


class DassConfigTest(unittest.TestCase):
    def test_config_common(self):
        ConfigTester(self, config_class=DassConfig, has_text_modality=False,
                     common_properties=["hidden_size", "num_labels"], dims=[8, 16, 24, 32]).run_common_tests()


class DassFeatureExtractionTester:
    """Feature sequences (frames, num_mel_bins) of growing length, as the padding tests of the mixin expect."""

    def __init__(self, parent, batch_size=7, min_seq_length=40, max_seq_length=200, num_mel_bins=16):
        self.parent = parent
        self.batch_size, self.min_seq_length, self.max_seq_length = batch_size, min_seq_length, max_seq_length
        self.seq_length_diff = (max_seq_length - min_seq_length) // (batch_size - 1)
        self.feature_size = num_mel_bins
        self.rng = np.random.default_rng(0)

    def prepare_feat_extract_dict(self):
        return {"feature_size": self.feature_size, "num_mel_bins": self.feature_size, "sampling_rate": 16000,
                "padding_value": 0.0, "return_attention_mask": True, "do_normalize": True}

    def prepare_inputs_for_common(self, equal_length=False, numpify=False):
        lengths = [self.max_seq_length] * self.batch_size if equal_length else list(
            range(self.min_seq_length, self.max_seq_length, self.seq_length_diff))
        inputs = [self.rng.random((length, self.feature_size)) for length in lengths]
        return inputs if numpify else [x.tolist() for x in inputs]


class DassFeatureExtractionTest(SequenceFeatureExtractionTestMixin, unittest.TestCase):
    feature_extraction_class = DassFeatureExtractor

    def setUp(self):
        self.feat_extract_tester = DassFeatureExtractionTester(self)
