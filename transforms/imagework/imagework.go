// Package imagework is what the stages that run an image model over catalog images on the
// workers share (embed with the embedder, rerank with the pairwise model): the part of
// their configuration that travels to the workers, and the setup that opens the model and
// the image loader.
package imagework

import (
	"context"
	"errors"

	"github.com/stirpipe/stirpipe/models/imageio"
	"github.com/stirpipe/stirpipe/models/imageload"
	"github.com/stirpipe/stirpipe/models/manifest"
	"github.com/stirpipe/stirpipe/models/ort"
)

// Config is the model and images part of such a stage's configuration.
type Config struct {
	// Model is the model manifest (or the ONNX file beside it), local or gs://.
	Model string
	// ModelSHA256 is the ONNX file's hex SHA-256 at launch; a worker whose copy differs
	// stops ("" = unchecked).
	ModelSHA256 string
	// Root is the dataset root that catalog paths are relative to (local or gs://).
	Root string
	// Runtime configures ONNX Runtime sessions (threads, optimisation, provider).
	Runtime ort.Options
	// Library is the ONNX Runtime shared library ("" = ort's default search).
	Library string
	// Limits bound the bytes and pixels of any image before it is decoded.
	Limits imageio.Limits
	// Total is the number of items expected, for progress reports (0 = unknown).
	Total int64
	// Progress turns on periodic progress lines on stderr (local runs).
	Progress bool
}

// Model is what Open needs of an opened model.
type Model interface {
	ModelSHA256() string
	Provider() string
	Close() error
}

// Opened is a worker's model and image loader.
type Opened[M Model] struct {
	Model    M
	Manifest *manifest.Manifest
	Images   *imageload.Loader
	// CPU says the model runs on the CPU provider, whose users take ort.CPUTurn.
	CPU bool
}

// Open loads ONNX Runtime and the model's manifest, opens the model with open, checks that
// its ONNX file is the one hashed at launch, and makes the loader of catalog images for
// the model's preprocessing. Call it in a DoFn's Setup, and close the model in Teardown.
func Open[M Model](ctx context.Context, c Config, open func(*manifest.Manifest, ort.Options) (M, error)) (*Opened[M], error) {
	if err := ort.Init(c.Library); err != nil {
		return nil, err
	}
	m, err := manifest.Open(ctx, c.Model)
	if err != nil {
		return nil, err
	}
	model, err := open(m, c.Runtime)
	if err != nil {
		return nil, err
	}
	o := &Opened[M]{Model: model, Manifest: m, CPU: model.Provider() == ort.ProviderCPU}
	err = manifest.CheckModel(c.Model, c.ModelSHA256, model.ModelSHA256())
	if err == nil {
		o.Images, err = imageload.New(c.Root, c.Limits, m.Preprocess)
	}
	if err != nil {
		return nil, errors.Join(err, model.Close())
	}
	return o, nil
}
