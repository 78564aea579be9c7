package feeds

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
)

// S3API is the part of the S3 client the source uses.
type S3API interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// S3 reads every object under a prefix of a bucket. An object whose ETag did not change since
// the last poll is not read again (the ETags are kept in memory; after a restart the ingest's
// digest check skips the unchanged objects).
type S3 struct {
	Client S3API
	Bucket string
	Prefix string
	etags  map[string]string
}

// Fetch lists the prefix and gets the changed objects.
func (s *S3) Fetch(ctx context.Context, _ Validators, emit func(Document) error) (Validators, error) {
	seen := map[string]string{}
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket), Prefix: aws.String(s.Prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, s.Prefix, err)
		}
		for _, o := range page.Contents {
			key, etag := aws.ToString(o.Key), aws.ToString(o.ETag)
			seen[key] = etag
			if etag != "" && s.etags[key] == etag {
				continue
			}
			name := "s3://" + s.Bucket + "/" + key
			if aws.ToInt64(o.Size) > advisory.MaxDocumentSize {
				if err := emit(Document{Name: name, Err: fmt.Errorf("larger than %d bytes", advisory.MaxDocumentSize)}); err != nil {
					return nil, err
				}
				continue
			}
			data, err := s.get(ctx, key)
			if err := emit(Document{Name: name, Data: data, Err: err}); err != nil {
				return nil, err
			}
		}
	}
	s.etags = seen
	return nil, nil
}

func (s *S3) get(ctx context.Context, key string) ([]byte, error) {
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", s.Bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, advisory.MaxDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", s.Bucket, key, err)
	}
	return data, nil
}
