// Package container holds the worker image recipe (Dockerfile: the cpu, gpu and flex
// targets), the script that assembles the cpu image's filesystem in a folder without Docker
// (layout.sh), and the boot wrappers the images ship. Its tests check that the layout is the
// Dockerfile's, and run the whole job on prism as a job server with PROCESS and EXTERNAL
// workers started from the layout, with catalog, models and outputs on Cloud Storage (the
// fake-gcs-server emulator): the path Flink's workers take.
package container
