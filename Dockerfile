# metalflow's one binary; each compose service picks its role by subcommand.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/metalflow ./cmd/metalflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/metalflow /metalflow
USER nonroot
ENTRYPOINT ["/metalflow"]
