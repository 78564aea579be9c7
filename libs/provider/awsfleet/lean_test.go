package awsfleet_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
	"github.com/patchwave/patchwave/services/cloudsim"
)

// cannedHTTP answers every request with one status and body.
type cannedHTTP struct {
	status int
	body   []byte
}

func (c cannedHTTP) Do(*http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    c.status,
		Header:        http.Header{"Content-Type": []string{"text/xml;charset=UTF-8"}},
		Body:          io.NopCloser(bytes.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
	}, nil
}

// decodeBoth calls op on two EC2 clients answered with body, one with the SDK's decoder and
// one with the adapter's lean decoders, and returns both outputs (result metadata removed)
// and errors.
func decodeBoth(t testing.TB, op string, status int, body []byte) (sdk, lean any, sdkErr, leanErr error) {
	t.Helper()
	client := func(lean bool) *ec2.Client {
		return ec2.New(ec2.Options{
			Region:           "us-east-1",
			BaseEndpoint:     aws.String("http://ec2.test"),
			Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
			HTTPClient:       cannedHTTP{status: status, body: body},
			RetryMaxAttempts: 1,
			APIOptions: func() []func(*middleware.Stack) error {
				if lean {
					return []func(*middleware.Stack) error{awsfleet.LeanEC2Decoders}
				}
				return nil
			}(),
		})
	}
	call := func(c *ec2.Client) (any, error) {
		ctx := context.Background()
		switch op {
		case "DescribeInstances":
			out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			if out != nil {
				out.ResultMetadata = middleware.Metadata{}
			}
			return out, err
		case "DescribeSnapshots":
			out, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{})
			if out != nil {
				out.ResultMetadata = middleware.Metadata{}
			}
			return out, err
		case "DescribeInstanceStatus":
			out, err := c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{})
			if out != nil {
				out.ResultMetadata = middleware.Metadata{}
			}
			return out, err
		case "CreateSnapshots":
			out, err := c.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String("i-1")}})
			if out != nil {
				out.ResultMetadata = middleware.Metadata{}
			}
			return out, err
		}
		t.Fatalf("no call for %s", op)
		return nil, nil
	}
	sdk, sdkErr = call(client(false))
	lean, leanErr = call(client(true))
	return sdk, lean, sdkErr, leanErr
}

// requireSameAsSDK checks that the adapter's client decodes body exactly as the SDK does
// (output or error), and that the lean decoder alone decodes it (wantLean) or gives up on it.
func requireSameAsSDK(t testing.TB, op string, body []byte, wantLean bool) any {
	t.Helper()
	sdk, lean, sdkErr, leanErr := decodeBoth(t, op, http.StatusOK, body)
	if sdkErr != nil {
		require.Error(t, leanErr, "the SDK failed with %v", sdkErr)
		require.Equal(t, sdkErr.Error(), leanErr.Error())
	} else {
		require.NoError(t, leanErr)
		require.True(t, reflect.DeepEqual(sdk, lean), "outputs differ:\nsdk:  %s\nlean: %s", dump(sdk), dump(lean))
	}
	direct, ok := awsfleet.LeanDecode(op, body)
	require.Equal(t, wantLean, ok, "lean decoder decoded the body")
	if ok {
		require.NoError(t, sdkErr)
		require.True(t, reflect.DeepEqual(sdk, direct), "outputs differ:\nsdk:  %s\nlean: %s", dump(sdk), dump(direct))
	}
	return sdk
}

func dump(v any) string {
	var b strings.Builder
	dumpValue(&b, reflect.ValueOf(v), 0)
	return b.String()
}

func dumpValue(b *strings.Builder, v reflect.Value, depth int) {
	if depth > 12 {
		b.WriteString("...")
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString("&")
		dumpValue(b, v.Elem(), depth+1)
	case reflect.Struct:
		if t, ok := v.Interface().(fmt.Stringer); ok && v.Type().PkgPath() == "time" {
			b.WriteString(t.String())
			return
		}
		b.WriteString("{")
		for i := range v.NumField() {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() || f.IsZero() {
				continue
			}
			b.WriteString(v.Type().Field(i).Name + ":")
			dumpValue(b, f, depth+1)
			b.WriteString(" ")
		}
		b.WriteString("}")
	case reflect.Slice:
		if v.IsNil() {
			b.WriteString("nil-slice")
			return
		}
		b.WriteString("[")
		for i := range v.Len() {
			dumpValue(b, v.Index(i), depth+1)
			b.WriteString(",")
		}
		b.WriteString("]")
	default:
		fmt.Fprintf(b, "%#v", v.Interface())
	}
}

// recordingHTTP keeps the body of every answer to an operation, by operation.
type recordingHTTP struct {
	inner aws.HTTPClient
	mu    sync.Mutex
	op    string
	bodys map[string][][]byte
}

func (r *recordingHTTP) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.inner.Do(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	r.bodys[r.op] = append(r.bodys[r.op], body)
	r.mu.Unlock()
	return resp, nil
}

func TestLeanDecodersMatchTheSDKOnCloudsimAnswers(t *testing.T) {
	acc := cloudtest.DefaultAccount()
	acc.Instances = 60
	acc.StoppedFraction = 0.2
	acc.AgentlessFraction = 0.1
	env := cloudtest.Start(t, cloudtest.Options{Accounts: []cloudsim.AccountConfig{acc}})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme", IncludeStopped: true})
	require.Len(t, insts, 60)
	var reqs []provider.SnapshotRequest
	for i, in := range insts[:5] {
		reqs = append(reqs, provider.SnapshotRequest{Tenant: "acme", RunID: "lean", InstanceID: in.ID,
			Tags: map[string]string{"note": fmt.Sprintf("a<b & \"c\" 'd' %d é", i)}})
	}
	_, err := env.Fleet.CreateSnapshots(t.Context(), tg, reqs)
	require.NoError(t, err)

	plain := env.EC2(t, tg)
	rec := &recordingHTTP{inner: plain.Options().HTTPClient, bodys: map[string][][]byte{}}
	c := ec2.New(plain.Options(), func(o *ec2.Options) { o.HTTPClient = rec })
	ctx := t.Context()
	rec.op = "DescribeInstances"
	p := ec2.NewDescribeInstancesPaginator(c, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(25)})
	for p.HasMorePages() {
		_, err := p.NextPage(ctx)
		require.NoError(t, err)
	}
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{insts[0].ID, insts[7].ID, "i-00000000000000000"}}}})
	require.NoError(t, err)
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:PatchWave"), Values: []string{"no-such-wave"}}}})
	require.NoError(t, err)
	rec.op = "DescribeSnapshots"
	_, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	require.NoError(t, err)
	_, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, MaxResults: aws.Int32(5)})
	require.NoError(t, err)
	_, err = c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{{Name: aws.String("tag:patchwave:run"), Values: []string{"none"}}}})
	require.NoError(t, err)
	rec.op = "CreateSnapshots"
	for i, in := range insts[5:8] {
		_, err = c.CreateSnapshots(ctx, &ec2.CreateSnapshotsInput{
			InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(in.ID)},
			Description:           aws.String(fmt.Sprintf("set <%d> & \"more\"", i)),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{
				{Key: aws.String(awsfleet.TagSnapshotSet), Value: aws.String(fmt.Sprintf("set-%d", i))},
				{Key: aws.String("note"), Value: aws.String(fmt.Sprintf("a<b & 'c' %d é", i))},
			}}},
		})
		require.NoError(t, err)
	}
	rec.op = "DescribeInstanceStatus"
	ids := make([]string, 0, 30)
	for _, in := range insts[:30] {
		ids = append(ids, in.ID)
	}
	_, err = c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: ids, IncludeAllInstances: aws.Bool(true)})
	require.NoError(t, err)
	_, err = c.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: ids})
	require.NoError(t, err)

	for op, bodies := range rec.bodys {
		for i, body := range bodies {
			t.Run(fmt.Sprintf("%s answer %d", op, i), func(t *testing.T) {
				requireSameAsSDK(t, op, body, true)
			})
		}
	}
	require.Len(t, rec.bodys["DescribeInstances"], 5)
	require.Len(t, rec.bodys["CreateSnapshots"], 3)
	for _, body := range rec.bodys["CreateSnapshots"] {
		out, ok := awsfleet.LeanDecode("CreateSnapshots", body)
		require.True(t, ok)
		snaps := out.(*ec2.CreateSnapshotsOutput).Snapshots
		require.NotEmpty(t, snaps, "cloudsim answers with a snapshot per volume")
		require.NotNil(t, snaps[0].SnapshotId)
		require.NotNil(t, snaps[0].StartTime)
		require.NotEmpty(t, snaps[0].Tags)
	}
}

// awsCreateSnapshots is shaped as the CreateSnapshots example of the EC2 API reference: a
// snapshot per volume of the instance, each with its tags.
const awsCreateSnapshots = `<?xml version="1.0" encoding="UTF-8"?>
<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>6fa4f4ad-6a5d-4ee0-8d0c-3f1a5bd2b2a4</requestId>
    <snapshotSet>
        <item>
            <description>pre-patch</description>
            <encrypted>false</encrypted>
            <ownerId>123456789012</ownerId>
            <progress></progress>
            <snapshotId>snap-0a1b2c3d4e5f60718</snapshotId>
            <startTime>2026-12-04T19:58:13.000Z</startTime>
            <state>pending</state>
            <tagSet>
                <item><key>patchwave:snapshot-set</key><value>ss-1</value></item>
                <item><key>Name</key><value>web &lt;1&gt;</value></item>
            </tagSet>
            <volumeId>vol-0a1b2c3d4e5f60718</volumeId>
            <volumeSize>8</volumeSize>
        </item>
        <item>
            <description>pre-patch</description>
            <encrypted>true</encrypted>
            <ownerId>123456789012</ownerId>
            <progress>0%</progress>
            <snapshotId>snap-0f1e2d3c4b5a69788</snapshotId>
            <startTime>2026-12-04T19:58:13.000Z</startTime>
            <state>pending</state>
            <tagSet>
                <item><key>patchwave:snapshot-set</key><value>ss-1</value></item>
            </tagSet>
            <volumeId>vol-0f1e2d3c4b5a69788</volumeId>
            <volumeSize>100</volumeSize>
        </item>
    </snapshotSet>
</CreateSnapshotsResponse>`

// The DescribeInstances example of the EC2 API reference, with the members cloudsim does not
// answer with; {{extra}} is replaced per case.
const awsDescribeInstances = `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
    <reservationSet>
        <item>
            <reservationId>r-1234567890abcdef0</reservationId>
            <ownerId>123456789012</ownerId>
            <groupSet/>
            <instancesSet>
                <item>
                    <instanceId>i-1234567890abcdef0</instanceId>
                    <imageId>ami-bff32ccc</imageId>
                    <instanceState>
                        <code>16</code>
                        <name>running</name>
                    </instanceState>
                    <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
                    <dnsName>ec2-54-194-252-215.eu-west-1.compute.amazonaws.com</dnsName>
                    <reason/>
                    <keyName>my_keypair</keyName>
                    <amiLaunchIndex>0</amiLaunchIndex>
                    <productCodes>
                        <item><productCode>a1b2c3</productCode><type>marketplace</type></item>
                    </productCodes>
                    <instanceType>t2.micro</instanceType>
                    <launchTime>2018-05-08T16:46:19.000Z</launchTime>
                    <placement>
                        <availabilityZone>eu-west-1c</availabilityZone>
                        <groupName></groupName>
                        <tenancy>default</tenancy>
                    </placement>
                    <monitoring>
                        <state>disabled</state>
                    </monitoring>
                    <subnetId>subnet-56f5f633</subnetId>
                    <vpcId>vpc-11112222</vpcId>
                    <privateIpAddress>192.168.1.88</privateIpAddress>
                    <ipAddress>54.194.252.215</ipAddress>
                    <sourceDestCheck>true</sourceDestCheck>
                    <groupSet>
                        <item>
                            <groupId>sg-e4076980</groupId>
                            <groupName>SecurityGroup1</groupName>
                        </item>
                    </groupSet>
                    <architecture>x86_64</architecture>
                    <rootDeviceType>ebs</rootDeviceType>
                    <rootDeviceName>/dev/xvda</rootDeviceName>
                    <blockDeviceMapping>
                        <item>
                            <deviceName>/dev/xvda</deviceName>
                            <ebs>
                                <volumeId>vol-1234567890abcdef0</volumeId>
                                <status>attached</status>
                                <attachTime>2015-12-22T10:44:09.000Z</attachTime>
                                <deleteOnTermination>true</deleteOnTermination>
                            </ebs>
                        </item>
                    </blockDeviceMapping>
                    <virtualizationType>hvm</virtualizationType>
                    <clientToken/>
                    <tagSet>
                        <item>
                            <key>Name</key>
                            <value>Server_1</value>
                        </item>
                        <item>
                            <key>Owner</key>
                            <value>R&amp;D &lt;ops&gt; &quot;team&quot; &apos;x&apos; — ünïcode 🚀</value>
                        </item>
                    </tagSet>
                    <hypervisor>xen</hypervisor>
                    <iamInstanceProfile>
                        <arn>arn:aws:iam::123456789012:instance-profile/role</arn>
                        <id>AIPAJ7EXAMPLE</id>
                    </iamInstanceProfile>
                    <ebsOptimized>false</ebsOptimized>
                    <enaSupport>true</enaSupport>
                    <platformDetails>Linux/UNIX</platformDetails>
                    <usageOperation>RunInstances</usageOperation>
                    <usageOperationUpdateTime>2018-05-08T16:46:19.000Z</usageOperationUpdateTime>
                    <bootMode>uefi-preferred</bootMode>
                    <currentInstanceBootMode>legacy-bios</currentInstanceBootMode>
                    <ipv6Address>2001:db6::1</ipv6Address>
                    {{extra}}
                </item>
            </instancesSet>
        </item>
        <item>
            <reservationId>r-0fedcba9876543210</reservationId>
            <ownerId>123456789012</ownerId>
            <requesterId>940372691376</requesterId>
            <instancesSet>
                <item>
                    <instanceId>i-0fedcba9876543210</instanceId>
                    <instanceState><code>80</code><name>stopped</name></instanceState>
                    <stateReason>
                        <code>Client.UserInitiatedShutdown</code>
                        <message>Client.UserInitiatedShutdown: User initiated shutdown</message>
                    </stateReason>
                    <reason>User initiated (2018-05-09 10:00:00 GMT)</reason>
                    <platform>windows</platform>
                    <tagSet/>
                </item>
                <item>
                    <instanceId>i-0aaaaaaaaaaaaaaaa</instanceId>
                </item>
            </instancesSet>
        </item>
    </reservationSet>
    <nextToken>eyJ2IjoiMiIsImMiOiJ0b2tlbiJ9</nextToken>
</DescribeInstancesResponse>`

// awsInstanceOptions are the members a VPC instance on AWS answers with besides the documented
// example's: network interfaces (with association, attachment, addresses and prefixes), CPU,
// metadata, maintenance, DNS name and capacity reservation options.
const awsInstanceOptions = `
                    <networkInterfaceSet>
                        <item>
                            <networkInterfaceId>eni-0c0a29997760baee7</networkInterfaceId>
                            <subnetId>subnet-56f5f633</subnetId>
                            <vpcId>vpc-11112222</vpcId>
                            <description/>
                            <ownerId>123456789012</ownerId>
                            <status>in-use</status>
                            <macAddress>02:dc:d1:86:2f:d2</macAddress>
                            <privateIpAddress>192.168.1.88</privateIpAddress>
                            <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
                            <sourceDestCheck>true</sourceDestCheck>
                            <groupSet>
                                <item><groupId>sg-e4076980</groupId><groupName>SecurityGroup1</groupName></item>
                            </groupSet>
                            <attachment>
                                <attachmentId>eni-attach-6537fb71</attachmentId>
                                <deviceIndex>0</deviceIndex>
                                <status>attached</status>
                                <attachTime>2018-05-08T16:46:19.000Z</attachTime>
                                <deleteOnTermination>true</deleteOnTermination>
                                <networkCardIndex>0</networkCardIndex>
                                <enaSrdSpecification><enaSrdEnabled>false</enaSrdEnabled><enaSrdUdpSpecification><enaSrdUdpEnabled>false</enaSrdUdpEnabled></enaSrdUdpSpecification></enaSrdSpecification>
                            </attachment>
                            <association>
                                <publicIp>54.194.252.215</publicIp>
                                <publicDnsName>ec2-54-194-252-215.eu-west-1.compute.amazonaws.com</publicDnsName>
                                <ipOwnerId>amazon</ipOwnerId>
                            </association>
                            <privateIpAddressesSet>
                                <item>
                                    <privateIpAddress>192.168.1.88</privateIpAddress>
                                    <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
                                    <primary>true</primary>
                                    <association>
                                        <publicIp>54.194.252.215</publicIp>
                                        <ipOwnerId>amazon</ipOwnerId>
                                    </association>
                                </item>
                            </privateIpAddressesSet>
                            <ipv6AddressesSet>
                                <item><ipv6Address>2001:db6::1</ipv6Address><isPrimaryIpv6>true</isPrimaryIpv6></item>
                            </ipv6AddressesSet>
                            <ipv4PrefixSet><item><ipv4Prefix>192.168.1.96/28</ipv4Prefix></item></ipv4PrefixSet>
                            <ipv6PrefixSet/>
                            <interfaceType>interface</interfaceType>
                            <connectionTrackingConfiguration><tcpEstablishedTimeout>432000</tcpEstablishedTimeout><udpStreamTimeout>180</udpStreamTimeout><udpTimeout>30</udpTimeout></connectionTrackingConfiguration>
                            <operator><managed>false</managed></operator>
                        </item>
                    </networkInterfaceSet>
                    <cpuOptions><coreCount>1</coreCount><threadsPerCore>2</threadsPerCore><amdSevSnp>disabled</amdSevSnp></cpuOptions>
                    <capacityReservationSpecification>
                        <capacityReservationPreference>open</capacityReservationPreference>
                        <capacityReservationTarget><capacityReservationId>cr-1</capacityReservationId></capacityReservationTarget>
                    </capacityReservationSpecification>
                    <hibernationOptions><configured>false</configured></hibernationOptions>
                    <enclaveOptions><enabled>false</enabled></enclaveOptions>
                    <metadataOptions>
                        <state>applied</state>
                        <httpTokens>required</httpTokens>
                        <httpPutResponseHopLimit>2</httpPutResponseHopLimit>
                        <httpEndpoint>enabled</httpEndpoint>
                        <httpProtocolIpv6>disabled</httpProtocolIpv6>
                        <instanceMetadataTags>disabled</instanceMetadataTags>
                    </metadataOptions>
                    <maintenanceOptions><autoRecovery>default</autoRecovery><rebootMigration>default</rebootMigration></maintenanceOptions>
                    <privateDnsNameOptions>
                        <hostnameType>ip-name</hostnameType>
                        <enableResourceNameDnsARecord>false</enableResourceNameDnsARecord>
                        <enableResourceNameDnsAAAARecord>false</enableResourceNameDnsAAAARecord>
                    </privateDnsNameOptions>
                    <networkPerformanceOptions><bandwidthWeighting>default</bandwidthWeighting></networkPerformanceOptions>`

func awsInstances(extra string) []byte {
	return []byte(strings.Replace(awsDescribeInstances, "{{extra}}", extra, 1))
}

func TestLeanDecodersMatchTheSDKOnAWSShapedAnswers(t *testing.T) {
	tests := []struct {
		name     string
		op       string
		body     []byte
		wantLean bool
	}{
		{name: "the documented instances with tags, several reservations and a next token", op: "DescribeInstances", body: awsInstances(""), wantLean: true},
		{name: "the documented CreateSnapshots answer, two volumes with tags", op: "CreateSnapshots", wantLean: true, body: []byte(awsCreateSnapshots)},
		{name: "a CreateSnapshots answer with every member", op: "CreateSnapshots", wantLean: true,
			body: []byte(`<CreateSnapshotsResponse><snapshotSet><item><snapshotId>snap-1</snapshotId><volumeId>vol-1</volumeId><availabilityZone>eu-central-1a</availabilityZone><outpostArn>arn:aws:outposts:eu-central-1:123456789012:outpost/op-1</outpostArn><sseType>sse-ebs</sseType><state>pending</state><startTime>2026-12-04T20:00:00.123Z</startTime><progress>0%</progress><ownerId>123456789012</ownerId><volumeSize>8</volumeSize><description>pre-patch &amp; more</description><encrypted>true</encrypted><tagSet><item><key>k</key><value/></item></tagSet></item></snapshotSet></CreateSnapshotsResponse>`)},
		{name: "an empty CreateSnapshots answer", op: "CreateSnapshots", wantLean: true, body: []byte{}},
		{name: "an empty snapshot set", op: "CreateSnapshots", wantLean: true,
			body: []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><snapshotSet/></CreateSnapshotsResponse>`)},
		{name: "unknown CreateSnapshots elements are skipped and names matched in any case", op: "CreateSnapshots", wantLean: true,
			body: []byte(`<R><future>1</future><SnapshotSet><ITEM><SnapshotId>snap-1</SnapshotId><newMember><x/></newMember></ITEM><other/></SnapshotSet></R>`)},
		{name: "a bad CreateSnapshots volume size goes to the SDK (which fails)", op: "CreateSnapshots", wantLean: false,
			body: []byte(`<R><snapshotSet><item><volumeSize>eight</volumeSize></item></snapshotSet></R>`)},
		{name: "a bad CreateSnapshots start time goes to the SDK (which fails)", op: "CreateSnapshots", wantLean: false,
			body: []byte(`<R><snapshotSet><item><startTime>yesterday</startTime></item></snapshotSet></R>`)},
		{name: "a truncated CreateSnapshots answer goes to the SDK", op: "CreateSnapshots", wantLean: false,
			body: []byte(awsCreateSnapshots[:len(awsCreateSnapshots)/2])},
		{name: "an operator on an instance and on its volume", op: "DescribeInstances", wantLean: true,
			body: awsInstances(`<operator><managed>true</managed><principal>eks.amazonaws.com</principal></operator>`)},
		{name: "names in another case", op: "DescribeInstances", wantLean: true,
			body: []byte(`<DescribeInstancesResponse><ReservationSet><ITEM><InstancesSet><item><InstanceId>i-1</InstanceId><TAGSET><Item><Key>k</Key><VALUE>v</VALUE></Item></TAGSET></item></InstancesSet></ITEM></ReservationSet></DescribeInstancesResponse>`)},
		{name: "unknown elements in complete structures are skipped", op: "DescribeInstances", wantLean: true,
			body: []byte(`<DescribeInstancesResponse><future><a><b/>text</a></future><reservationSet><item><newThing>1</newThing><instancesSet><item><instanceId>i-1</instanceId><instanceState><code>16</code><extra><x>1</x></extra></instanceState><placement><newZone>z</newZone></placement></item></instancesSet></item><noise>x</noise></reservationSet></DescribeInstancesResponse>`)},
		{name: "an empty reservation set", op: "DescribeInstances", wantLean: true,
			body: []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet/></DescribeInstancesResponse>`)},
		{name: "no reservation set at all", op: "DescribeInstances", wantLean: true,
			body: []byte(`<DescribeInstancesResponse xmlns="x"><requestId>r</requestId></DescribeInstancesResponse>`)},
		{name: "a repeated list appends and a repeated structure merges", op: "DescribeInstances", wantLean: true,
			body: []byte(`<R><reservationSet><item><instancesSet><item><tagSet><item><key>a</key></item></tagSet><tagSet><item><key>b</key></item></tagSet><instanceState><code>16</code></instanceState><instanceState><name>running</name></instanceState></item></instancesSet></item></reservationSet><reservationSet><item/></reservationSet></R>`)},
		{name: "a real VPC instance with its network interfaces and options", op: "DescribeInstances", wantLean: true, body: awsInstances(awsInstanceOptions)},
		{name: "a license set goes to the SDK", op: "DescribeInstances", wantLean: false,
			body: awsInstances(`<licenseSet><item><licenseConfigurationArn>arn:aws:license-manager:1</licenseConfigurationArn></item></licenseSet>`)},
		{name: "an unknown instance member goes to the SDK", op: "DescribeInstances", wantLean: false,
			body: awsInstances(`<someFutureMember>1</someFutureMember>`)},
		{name: "a comment goes to the SDK", op: "DescribeInstances", wantLean: false, body: awsInstances(`<!-- note -->`)},
		{name: "CDATA goes to the SDK", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId><![CDATA[k<1>]]></kernelId>`)},
		{name: "a carriage return goes to the SDK", op: "DescribeInstances", wantLean: false, body: awsInstances("<kernelId>a\r\nb</kernelId>")},
		{name: "character references are decoded", op: "DescribeInstances", wantLean: true, body: awsInstances(`<kernelId>a&#x41;b&#34;&#39;&#13;&#x1F680;</kernelId>`)},
		{name: "a reference to a character XML forbids goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId>a&#0;b</kernelId>`)},
		{name: "a reference past the last character goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId>&#x110000;</kernelId>`)},
		{name: "an unescaped ]]> goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId>a]]>b</kernelId>`)},
		{name: "an unknown entity goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId>a&nbsp;b</kernelId>`)},
		{name: "a bad integer goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<amiLaunchIndex>x</amiLaunchIndex>`)},
		{name: "a bad boolean goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<ebsOptimized>yes</ebsOptimized>`)},
		{name: "a bad time goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<launchTime>yesterday</launchTime>`)},
		{name: "an element inside a value goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId>a<b/></kernelId>`)},
		{name: "a mismatched end tag goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId>a</kernelID>`)},
		{name: "an attribute below the root goes to the SDK", op: "DescribeInstances", wantLean: false, body: awsInstances(`<kernelId a="1">k</kernelId>`)},
		{name: "a prefixed name goes to the SDK", op: "DescribeInstances", wantLean: false, body: awsInstances(`<x:kernelId>k</x:kernelId>`)},
		{name: "invalid UTF-8 goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances("<kernelId>a\xffb</kernelId>")},
		{name: "a truncated body goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false, body: awsInstances("")[:600]},
		{name: "an empty body goes to the SDK", op: "DescribeInstances", wantLean: false, body: nil},
		{name: "another encoding goes to the SDK (which fails)", op: "DescribeInstances", wantLean: false,
			body: []byte(`<?xml version="1.0" encoding="ISO-8859-1"?><R><reservationSet/></R>`)},

		{name: "documented snapshots with tags, escaped text and a next token", op: "DescribeSnapshots", wantLean: true, body: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
   <requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>
   <snapshotSet>
      <item>
         <snapshotId>snap-1234567890abcdef0</snapshotId>
         <volumeId>vol-1234567890abcdef0</volumeId>
         <status>pending</status>
         <startTime>2016-01-28T21:51:12.000Z</startTime>
         <progress>80%</progress>
         <ownerId>123456789012</ownerId>
         <volumeSize>15</volumeSize>
         <description>Daily Backup &amp; more &lt;x&gt;</description>
         <encrypted>true</encrypted>
         <kmsKeyId>arn:aws:kms:us-east-1:123456789012:key/6876fb1b-example</kmsKeyId>
         <dataEncryptionKeyId>dek-1</dataEncryptionKeyId>
         <storageTier>standard</storageTier>
         <completionDurationMinutes>7</completionDurationMinutes>
         <completionTime>2016-01-28T21:58:12.000Z</completionTime>
         <fullSnapshotSizeInBytes>16106127360</fullSnapshotSizeInBytes>
         <sseType>sse-ebs</sseType>
         <transferType>standard</transferType>
         <ownerAlias>amazon</ownerAlias>
         <outpostArn>arn:aws:outposts:us-east-1:123456789012:outpost/op-1</outpostArn>
         <restoreExpiryTime>2016-02-28T21:58:12.000Z</restoreExpiryTime>
         <statusMessage/>
         <tagSet>
            <item><key>patchwave:snapshot-set</key><value>ss-1</value></item>
            <item><key>note</key><value>a "quoted" 'value' — é</value></item>
         </tagSet>
         <availabilityZone>us-east-1a</availabilityZone>
      </item>
      <item>
         <snapshotId>snap-2</snapshotId>
         <status>error</status>
         <statusMessage>failed</statusMessage>
      </item>
   </snapshotSet>
   <nextToken>next</nextToken>
</DescribeSnapshotsResponse>`)},
		{name: "no snapshots", op: "DescribeSnapshots", wantLean: true,
			body: []byte(`<DescribeSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><snapshotSet></snapshotSet></DescribeSnapshotsResponse>`)},
		{name: "an unknown snapshot member is skipped", op: "DescribeSnapshots", wantLean: true,
			body: []byte(`<DescribeSnapshotsResponse><snapshotSet><item><snapshotId>snap-1</snapshotId><futureField><a/></futureField></item></snapshotSet></DescribeSnapshotsResponse>`)},
		{name: "a bad volume size goes to the SDK (which fails)", op: "DescribeSnapshots", wantLean: false,
			body: []byte(`<DescribeSnapshotsResponse><snapshotSet><item><volumeSize>big</volumeSize></item></snapshotSet></DescribeSnapshotsResponse>`)},

		{name: "instance statuses with events and details", op: "DescribeInstanceStatus", wantLean: true, body: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstanceStatusResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>3be1508e-c444-4fef-89cc-0b1223c4f02fEXAMPLE</requestId>
    <instanceStatusSet>
        <item>
            <instanceId>i-1234567890abcdef0</instanceId>
            <availabilityZone>us-east-1d</availabilityZone>
            <availabilityZoneId>use1-az2</availabilityZoneId>
            <instanceState><code>16</code><name>running</name></instanceState>
            <systemStatus>
                <status>impaired</status>
                <details><item><name>reachability</name><status>failed</status><impairedSince>2011-12-05T18:35:00.000Z</impairedSince></item></details>
            </systemStatus>
            <instanceStatus>
                <status>ok</status>
                <details><item><name>reachability</name><status>passed</status></item></details>
            </instanceStatus>
            <eventsSet>
                <item>
                    <code>instance-retirement</code>
                    <instanceEventId>instance-event-1</instanceEventId>
                    <description>The instance is running on degraded hardware</description>
                    <notBefore>2011-12-05T13:00:00.000Z</notBefore>
                    <notAfter>2011-12-06T13:00:00.000Z</notAfter>
                </item>
            </eventsSet>
        </item>
        <item>
            <instanceId>i-2</instanceId>
            <instanceState><code>80</code><name>stopped</name></instanceState>
            <systemStatus><status>not-applicable</status></systemStatus>
            <instanceStatus><status>not-applicable</status></instanceStatus>
        </item>
    </instanceStatusSet>
    <nextToken>n</nextToken>
</DescribeInstanceStatusResponse>`)},
		{name: "an attached EBS status goes to the SDK", op: "DescribeInstanceStatus", wantLean: false,
			body: []byte(`<R><instanceStatusSet><item><instanceId>i-1</instanceId><attachedEbsStatus><status>ok</status></attachedEbsStatus></item></instanceStatusSet></R>`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireSameAsSDK(t, tt.op, tt.body, tt.wantLean)
		})
	}
}

func TestLeanDecodersLeaveErrorsToTheSDK(t *testing.T) {
	body := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidInstanceID.Malformed</Code><Message>Invalid id: "i-1"</Message></Error></Errors><RequestID>req-1</RequestID></Response>`)
	for _, op := range []string{"DescribeInstances", "DescribeSnapshots", "DescribeInstanceStatus", "CreateSnapshots"} {
		t.Run(op, func(t *testing.T) {
			_, _, sdkErr, leanErr := decodeBoth(t, op, http.StatusBadRequest, body)
			require.Error(t, sdkErr)
			require.Error(t, leanErr)
			require.Equal(t, sdkErr.Error(), leanErr.Error())
			require.Contains(t, leanErr.Error(), "InvalidInstanceID.Malformed")
		})
	}
}

// trackedBody records how much of an answer was read and whether it was closed.
type trackedBody struct {
	r      *bytes.Reader
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *trackedBody) Close() error               { b.closed = true; return nil }

type trackedHTTP struct {
	status int
	body   *trackedBody
}

func (c trackedHTTP) Do(*http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: c.status, Header: http.Header{"Content-Type": []string{"text/xml;charset=UTF-8"}},
		Body: c.body, ContentLength: int64(c.body.r.Len())}, nil
}

func TestAdapterDropsCreateSnapshotsAnswersUnread(t *testing.T) {
	errBody := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code><Message>The instance ID 'i-1' does not exist</Message></Error></Errors><RequestID>req-1</RequestID></Response>`)
	call := func(t *testing.T, status int, body []byte, opts ...func(*middleware.Stack) error) (*ec2.CreateSnapshotsOutput, *trackedBody, error) {
		tb := &trackedBody{r: bytes.NewReader(body)}
		c := ec2.New(ec2.Options{
			Region:           "us-east-1",
			BaseEndpoint:     aws.String("http://ec2.test"),
			Credentials:      credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
			HTTPClient:       trackedHTTP{status: status, body: tb},
			RetryMaxAttempts: 1,
			APIOptions:       opts,
		})
		out, err := c.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String("i-1")}})
		return out, tb, err
	}
	t.Run("a successful answer is read to its end, closed and not decoded", func(t *testing.T) {
		out, body, err := call(t, http.StatusOK, []byte(awsCreateSnapshots), awsfleet.AdapterEC2Decoders)
		require.NoError(t, err)
		require.NotNil(t, out)
		require.Empty(t, out.Snapshots)
		require.Zero(t, body.r.Len(), "the body is read to its end, so the connection is kept")
		require.True(t, body.closed)
	})
	t.Run("the lean decoder alone decodes the same answer", func(t *testing.T) {
		out, _, err := call(t, http.StatusOK, []byte(awsCreateSnapshots), awsfleet.LeanEC2Decoders)
		require.NoError(t, err)
		require.Len(t, out.Snapshots, 2)
		require.Equal(t, "snap-0a1b2c3d4e5f60718", aws.ToString(out.Snapshots[0].SnapshotId))
	})
	t.Run("an error answer is the SDK's error", func(t *testing.T) {
		_, _, sdkErr := call(t, http.StatusBadRequest, errBody)
		_, body, err := call(t, http.StatusBadRequest, errBody, awsfleet.AdapterEC2Decoders)
		require.Error(t, err)
		require.Equal(t, sdkErr.Error(), err.Error())
		require.Contains(t, err.Error(), "InvalidInstanceID.NotFound")
		require.True(t, body.closed)
	})
}

// FuzzLeanDecoders checks that for any body the adapter's client answers as the SDK does, and
// that the lean decoder either matches the SDK or gives up (it never panics).
func FuzzLeanDecoders(f *testing.F) {
	f.Add(0, awsInstances(""))
	f.Add(0, awsInstances(`<operator><managed>true</managed></operator>`))
	f.Add(0, awsInstances(awsInstanceOptions))
	f.Add(1, []byte(`<DescribeSnapshotsResponse><snapshotSet><item><snapshotId>snap-1</snapshotId><tagSet><item><key>k</key><value>a&amp;b</value></item></tagSet></item></snapshotSet><nextToken>n</nextToken></DescribeSnapshotsResponse>`))
	f.Add(2, []byte(`<R><instanceStatusSet><item><instanceId>i-1</instanceId><systemStatus><status>ok</status><details><item><name>reachability</name></item></details></systemStatus></item></instanceStatusSet></R>`))
	f.Add(0, []byte(`<R><reservationSet><item><instancesSet><item><instanceId/></item></instancesSet></item></reservationSet></R>`))
	f.Add(3, []byte(awsCreateSnapshots))
	f.Add(3, []byte{})
	ops := []string{"DescribeInstances", "DescribeSnapshots", "DescribeInstanceStatus", "CreateSnapshots"}
	f.Fuzz(func(t *testing.T, op int, body []byte) {
		name := ops[(op%len(ops)+len(ops))%len(ops)]
		sdk, lean, sdkErr, leanErr := decodeBoth(t, name, http.StatusOK, body)
		if (sdkErr == nil) != (leanErr == nil) || (sdkErr != nil && sdkErr.Error() != leanErr.Error()) {
			t.Fatalf("errors differ: sdk %v, lean %v", sdkErr, leanErr)
		}
		if sdkErr == nil && !reflect.DeepEqual(sdk, lean) {
			t.Fatalf("outputs differ:\nsdk:  %s\nlean: %s", dump(sdk), dump(lean))
		}
		if direct, ok := awsfleet.LeanDecode(name, body); ok {
			if sdkErr != nil {
				t.Fatalf("lean decoded a body the SDK fails on: %v", sdkErr)
			}
			if !reflect.DeepEqual(sdk, direct) {
				t.Fatalf("outputs differ:\nsdk:  %s\nlean: %s", dump(sdk), dump(direct))
			}
		}
	})
}

// BenchmarkEC2Decode measures one EC2 call on the client side alone (no emulator, no network:
// the answer is canned), with the SDK's decoder and with the adapter's lean decoders, for the
// answers the adapter reads most, taken from cloudsim: a DescribeInstances page of 1,000
// instances, a DescribeSnapshots answer for 200 sets and a DescribeInstanceStatus answer for
// 100 instances. Run:
//
//	cd libs/provider/awsfleet && go test -run '^$' -bench EC2Decode -benchmem .
func BenchmarkEC2Decode(b *testing.B) {
	acc := cloudtest.DefaultAccount()
	acc.Instances = 1000
	env := cloudtest.Start(b, cloudtest.Options{Accounts: []cloudsim.AccountConfig{acc}})
	tg := env.Target("acme")
	insts := env.Discover(b, provider.DiscoverQuery{Tenant: "acme"})
	require.GreaterOrEqual(b, len(insts), 200)
	var reqs []provider.SnapshotRequest
	for _, in := range insts[:200] {
		reqs = append(reqs, provider.SnapshotRequest{Tenant: "acme", RunID: "bench", InstanceID: in.ID})
	}
	created, err := env.Fleet.CreateSnapshots(b.Context(), tg, reqs)
	require.NoError(b, err)
	sets := make([]string, len(created))
	for i, r := range created {
		sets[i] = r.Snapshot.ID
	}
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = insts[i].ID
	}
	plain := env.EC2(b, tg)
	rec := &recordingHTTP{inner: plain.Options().HTTPClient, bodys: map[string][][]byte{}}
	c := ec2.New(plain.Options(), func(o *ec2.Options) { o.HTTPClient = rec })
	rec.op = "DescribeInstances"
	_, err = c.DescribeInstances(b.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
	require.NoError(b, err)
	rec.op = "DescribeSnapshots"
	_, err = c.DescribeSnapshots(b.Context(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"},
		Filters: []ec2types.Filter{{Name: aws.String("tag:patchwave:snapshot-set"), Values: sets}}})
	require.NoError(b, err)
	rec.op = "DescribeInstanceStatus"
	_, err = c.DescribeInstanceStatus(b.Context(), &ec2.DescribeInstanceStatusInput{InstanceIds: ids, IncludeAllInstances: aws.Bool(true)})
	require.NoError(b, err)

	for _, op := range []string{"DescribeInstances", "DescribeSnapshots", "DescribeInstanceStatus"} {
		body := rec.bodys[op][0]
		for _, lean := range []bool{false, true} {
			name := op + "/sdk"
			if lean {
				name = op + "/lean"
			}
			b.Run(name, func(b *testing.B) {
				var apiOptions []func(*middleware.Stack) error
				if lean {
					apiOptions = append(apiOptions, awsfleet.LeanEC2Decoders)
				}
				client := cannedEC2(body, apiOptions)
				ctx := context.Background()
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					switch op {
					case "DescribeInstances":
						_, err = client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
					case "DescribeSnapshots":
						_, err = client.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{})
					case "DescribeInstanceStatus":
						_, err = client.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{})
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestLeanDecodersKnowEveryMemberOfTheSDKTypes guards the structures the lean decoders treat as
// complete (an unknown element in them is skipped, as the SDK skips it): if an SDK upgrade
// adds a member to one of them, the lean decoder would skip the new element where the SDK
// fills the member, so this test fails until the decoder (and this list) learn it.
func TestLeanDecodersKnowEveryMemberOfTheSDKTypes(t *testing.T) {
	decoded := map[any][]string{
		(*ec2.DescribeInstancesOutput)(nil):      {"NextToken", "Reservations", "ResultMetadata"},
		(*ec2.DescribeSnapshotsOutput)(nil):      {"NextToken", "Snapshots", "ResultMetadata"},
		(*ec2.DescribeInstanceStatusOutput)(nil): {"InstanceStatuses", "NextToken", "ResultMetadata"},
		(*ec2types.Snapshot)(nil): {"AvailabilityZone", "CompletionDurationMinutes", "CompletionTime", "DataEncryptionKeyId",
			"Description", "Encrypted", "FullSnapshotSizeInBytes", "KmsKeyId", "OutpostArn", "OwnerAlias", "OwnerId",
			"Progress", "RestoreExpiryTime", "SnapshotId", "SseType", "StartTime", "State", "StateMessage", "StorageTier",
			"Tags", "TransferType", "VolumeId", "VolumeSize"},
		(*ec2.CreateSnapshotsOutput)(nil): {"ResultMetadata", "Snapshots"},
		(*ec2types.SnapshotInfo)(nil): {"AvailabilityZone", "Description", "Encrypted", "OutpostArn", "OwnerId", "Progress",
			"SnapshotId", "SseType", "StartTime", "State", "Tags", "VolumeId", "VolumeSize"},
		(*ec2types.Tag)(nil):             {"Key", "Value"},
		(*ec2types.Reservation)(nil):     {"Groups", "Instances", "OwnerId", "RequesterId", "ReservationId"},
		(*ec2types.GroupIdentifier)(nil): {"GroupId", "GroupName"},
		// Instance is not complete: these four members send the body to the SDK.
		(*ec2types.Instance)(nil): {"AmiLaunchIndex", "Architecture", "BlockDeviceMappings", "BootMode", "CapacityBlockId",
			"CapacityReservationId", "CapacityReservationSpecification", "ClientToken", "CpuOptions",
			"CurrentInstanceBootMode", "EbsOptimized", "ElasticGpuAssociations (to the SDK)",
			"ElasticInferenceAcceleratorAssociations (to the SDK)", "EnaSupport", "EnclaveOptions", "HibernationOptions",
			"Hypervisor", "IamInstanceProfile", "ImageId", "InstanceId", "InstanceLifecycle", "InstanceType", "Ipv6Address", "KernelId",
			"KeyName", "LaunchTime", "Licenses (to the SDK)", "MaintenanceOptions", "MetadataOptions", "Monitoring",
			"NetworkInterfaces", "NetworkPerformanceOptions", "Operator", "OutpostArn", "Placement", "Platform",
			"PlatformDetails", "PrivateDnsName", "PrivateDnsNameOptions", "PrivateIpAddress", "ProductCodes",
			"PublicDnsName", "PublicIpAddress", "RamdiskId", "RootDeviceName", "RootDeviceType",
			"SecondaryInterfaces (to the SDK)", "SecurityGroups", "SourceDestCheck", "SpotInstanceRequestId",
			"SriovNetSupport", "State", "StateReason", "StateTransitionReason", "SubnetId", "Tags", "TpmSupport",
			"UsageOperation", "UsageOperationUpdateTime", "VirtualizationType", "VpcId"},
		(*ec2types.InstanceState)(nil):              {"Code", "Name"},
		(*ec2types.Monitoring)(nil):                 {"State"},
		(*ec2types.StateReason)(nil):                {"Code", "Message"},
		(*ec2types.IamInstanceProfile)(nil):         {"Arn", "Id"},
		(*ec2types.ProductCode)(nil):                {"ProductCodeId", "ProductCodeType"},
		(*ec2types.OperatorResponse)(nil):           {"HiddenByDefault", "Managed", "Principal"},
		(*ec2types.InstanceBlockDeviceMapping)(nil): {"DeviceName", "Ebs"},
		(*ec2types.EbsInstanceBlockDevice)(nil): {"AssociatedResource", "AttachTime", "DeleteOnTermination", "EbsCardIndex",
			"Operator", "Status", "VolumeId", "VolumeOwnerId"},
		(*ec2types.Placement)(nil): {"Affinity", "AvailabilityZone", "AvailabilityZoneId", "GroupId", "GroupName", "HostId",
			"HostResourceGroupArn", "PartitionNumber", "SpreadDomain", "Tenancy"},
		(*ec2types.InstanceNetworkInterface)(nil): {"Association", "Attachment", "ConnectionTrackingConfiguration",
			"Description", "Groups", "InterfaceType", "Ipv4Prefixes", "Ipv6Addresses", "Ipv6Prefixes", "MacAddress",
			"NetworkInterfaceId", "Operator", "OwnerId", "PrivateDnsName", "PrivateIpAddress", "PrivateIpAddresses",
			"SourceDestCheck", "Status", "SubnetId", "VpcId"},
		(*ec2types.InstanceNetworkInterfaceAssociation)(nil): {"CarrierIp", "CustomerOwnedIp", "IpOwnerId", "PublicDnsName", "PublicIp"},
		(*ec2types.InstanceNetworkInterfaceAttachment)(nil): {"AttachTime", "AttachmentId", "DeleteOnTermination", "DeviceIndex",
			"EnaQueueCount", "EnaSrdSpecification", "NetworkCardIndex", "Status"},
		(*ec2types.InstanceAttachmentEnaSrdSpecification)(nil):    {"EnaSrdEnabled", "EnaSrdUdpSpecification"},
		(*ec2types.InstanceAttachmentEnaSrdUdpSpecification)(nil): {"EnaSrdUdpEnabled"},
		(*ec2types.ConnectionTrackingSpecificationResponse)(nil):  {"TcpEstablishedTimeout", "UdpStreamTimeout", "UdpTimeout"},
		(*ec2types.InstancePrivateIpAddress)(nil):                 {"Association", "Primary", "PrivateDnsName", "PrivateIpAddress"},
		(*ec2types.InstanceIpv6Address)(nil):                      {"Ipv6Address", "IsPrimaryIpv6"},
		(*ec2types.InstanceIpv4Prefix)(nil):                       {"Ipv4Prefix"},
		(*ec2types.InstanceIpv6Prefix)(nil):                       {"Ipv6Prefix"},
		(*ec2types.CpuOptions)(nil):                               {"AmdSevSnp", "CoreCount", "NestedVirtualization", "ThreadsPerCore"},
		(*ec2types.CapacityReservationSpecificationResponse)(nil): {"CapacityReservationPreference", "CapacityReservationTarget"},
		(*ec2types.CapacityReservationTargetResponse)(nil):        {"CapacityReservationId", "CapacityReservationResourceGroupArn"},
		(*ec2types.HibernationOptions)(nil):                       {"Configured"},
		(*ec2types.EnclaveOptions)(nil):                           {"Enabled"},
		(*ec2types.InstanceMetadataOptionsResponse)(nil): {"HttpEndpoint", "HttpProtocolIpv6", "HttpPutResponseHopLimit",
			"HttpTokens", "InstanceMetadataTags", "State"},
		(*ec2types.InstanceMaintenanceOptions)(nil):        {"AutoRecovery", "RebootMigration"},
		(*ec2types.PrivateDnsNameOptionsResponse)(nil):     {"EnableResourceNameDnsAAAARecord", "EnableResourceNameDnsARecord", "HostnameType"},
		(*ec2types.InstanceNetworkPerformanceOptions)(nil): {"BandwidthWeighting"},
		// InstanceStatus is not complete: three summaries send the body to the SDK.
		(*ec2types.InstanceStatus)(nil): {"ApplicationStatus (to the SDK)", "AttachedEbsStatus (to the SDK)", "AvailabilityZone",
			"AvailabilityZoneId", "Events", "InstanceId", "InstanceState", "InstanceStatus", "Operator", "OutpostArn",
			"PerformanceStatus (to the SDK)", "SystemStatus"},
		(*ec2types.InstanceStatusSummary)(nil): {"Details", "Status"},
		(*ec2types.InstanceStatusDetails)(nil): {"ImpairedSince", "Name", "Status"},
		(*ec2types.InstanceStatusEvent)(nil): {"Code", "Description", "InstanceEventId", "NotAfter", "NotBefore",
			"NotBeforeDeadline"},
	}
	for v, fields := range decoded {
		typ := reflect.TypeOf(v).Elem()
		t.Run(typ.String(), func(t *testing.T) {
			var want []string
			for _, f := range fields {
				name, _, _ := strings.Cut(f, " ")
				want = append(want, name)
			}
			var got []string
			for i := range typ.NumField() {
				if f := typ.Field(i); f.IsExported() {
					got = append(got, f.Name)
				}
			}
			require.ElementsMatch(t, want, got, "the SDK's members of %s changed: teach the lean decoder (leandecode.go) the new ones", typ)
		})
	}
}

// BenchmarkEC2CallStack measures the SDK's per-call work on the client side alone (a canned,
// empty CreateSnapshots answer, no network, a plain EC2 client): with the SDK's stack as it
// is, and with the steps that do nothing for the adapter removed (the trial docs/performance.md
// "(sdkcalls)" reports; the adapter's EC2 and SSM clients remove them since "(sdkmw)", see
// removeIdleSteps). Run:
//
//	cd libs/provider/awsfleet && go test -run '^$' -bench EC2CallStack -benchmem .
func BenchmarkEC2CallStack(b *testing.B) {
	body := []byte(`<CreateSnapshotsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><snapshotSet/></CreateSnapshotsResponse>`)
	idle := awsfleet.RemoveIdleSteps
	for _, trimmed := range []bool{false, true} {
		name := "sdk"
		if trimmed {
			name = "trimmed"
		}
		b.Run(name, func(b *testing.B) {
			var apiOptions []func(*middleware.Stack) error
			if trimmed {
				apiOptions = append(apiOptions, idle)
			}
			client := cannedEC2(body, apiOptions)
			in := &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String("i-0123456789abcdef0")}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.CreateSnapshots(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cannedEC2 is an EC2 client whose every call is answered 200 with body, with apiOptions.
func cannedEC2(body []byte, apiOptions []func(*middleware.Stack) error) *ec2.Client {
	return ec2.New(ec2.Options{
		Region:       "eu-central-1",
		BaseEndpoint: aws.String("http://ec2.test"),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		HTTPClient:   cannedHTTP{status: http.StatusOK, body: body},
		APIOptions:   apiOptions,
	})
}
